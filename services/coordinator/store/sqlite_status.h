// The one place where SQLite result codes become absl::Status.
//
//   SQLITE_OK / ROW / DONE            -> OK
//   SQLITE_BUSY / LOCKED              -> UNAVAILABLE (another connection holds the lock; retry)
//   SQLITE_CONSTRAINT_PRIMARYKEY/UNIQUE -> ALREADY_EXISTS
//   other SQLITE_CONSTRAINT (foreign key, not null, check) -> FAILED_PRECONDITION
//   SQLITE_FULL / NOMEM               -> RESOURCE_EXHAUSTED (disk or memory full)
//   SQLITE_CORRUPT / NOTADB           -> DATA_LOSS
//   SQLITE_CANTOPEN / PERM / READONLY / AUTH -> PERMISSION_DENIED
//   SQLITE_IOERR                      -> UNAVAILABLE (the disk failed the operation)
//   anything else                     -> INTERNAL
// The message is "<what>: <sqlite message> (<code name>)".
#ifndef TECL_SERVICES_COORDINATOR_STORE_SQLITE_STATUS_H_
#define TECL_SERVICES_COORDINATOR_STORE_SQLITE_STATUS_H_

#include <sqlite3.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tecl::coordinator {

// `rc` is the (extended) result code; `db` (may be null) supplies the error message.
absl::Status SqliteStatus(int rc, sqlite3* db, absl::string_view what);

}  // namespace tecl::coordinator

#endif  // TECL_SERVICES_COORDINATOR_STORE_SQLITE_STATUS_H_
