#include "tests/integration/dist/dist_test_model.h"

namespace tecl::worker::dist::testing {

SmallNet::SmallNet() {
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
  conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).stride(2)));
  embed = register_module("embed", torch::nn::Linear(8 * 3 * 3, 16));
  pair = register_module("pair", torch::nn::Linear(32, 16));
  classify = register_module("classify", torch::nn::Linear(32, 4));
}

torch::Tensor SmallNet::Loss(const torch::Tensor& x, const torch::Tensor& y) {
  auto Encode = [&](const torch::Tensor& input) {
    torch::Tensor h = torch::relu(conv1(input));
    h = torch::relu(conv2(h));
    return torch::relu(embed(h.flatten(1)));
  };
  torch::Tensor h = Encode(x);
  torch::Tensor h_flipped = Encode(x.flip({3}));
  torch::Tensor zab = torch::relu(pair(torch::cat({h, h_flipped}, 1)));
  torch::Tensor zba = torch::relu(pair(torch::cat({h_flipped, h}, 1)));
  torch::Tensor logits = classify(torch::cat({zab, zba}, 1));
  return torch::nn::functional::cross_entropy(logits, y);
}

Batch GlobalBatch(int step, int world_size, int batch) {
  torch::Generator generator = at::detail::createCPUGenerator(1000 + step);
  const int64_t n = static_cast<int64_t>(world_size) * batch;
  torch::Tensor x = torch::randn({n, 3, 8, 8}, generator);
  torch::Tensor y = torch::randint(0, 4, {n}, generator);
  return {x, y};
}

Batch RankBatch(int step, int rank, int world_size, int batch) {
  Batch global = GlobalBatch(step, world_size, batch);
  return {global.x.narrow(0, static_cast<int64_t>(rank) * batch, batch),
          global.y.narrow(0, static_cast<int64_t>(rank) * batch, batch)};
}

std::vector<NamedParameter> NamedParameters(torch::nn::Module& module) {
  std::vector<NamedParameter> out;
  for (const auto& item : module.named_parameters()) out.push_back({item.key(), item.value()});
  return out;
}

void Train(SmallNet& model, int steps, const std::function<Batch(int)>& next_batch,
           GradientReducer* reducer, const std::function<void(int)>& before_step) {
  torch::optim::AdamW optimizer(model.parameters(),
                                torch::optim::AdamWOptions(1e-2).weight_decay(1e-2));
  for (int step = 0; step < steps; ++step) {
    if (before_step) before_step(step);
    Batch batch = next_batch(step);
    optimizer.zero_grad();
    model.Loss(batch.x, batch.y).backward();
    if (reducer != nullptr) reducer->Finalize();
    optimizer.step();
  }
}

}  // namespace tecl::worker::dist::testing
