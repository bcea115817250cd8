// teclctl: the TECL command line (tools/teclctl/cli.h).
#include "tools/teclctl/cli.h"

int main(int argc, char** argv) { return tecl::teclctl::Run(argc, argv); }
