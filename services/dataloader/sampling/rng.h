// Counter-based random numbers for deterministic sampling.
//
// Every random decision of the dataloader is drawn from an Rng seeded by a key hashed from the
// coordinates of that decision, e.g. (seed, epoch, rank, world size, step, group, purpose). No
// generator state is carried from one batch to the next, so the batch for a cursor is the same on
// every loader, in every order, after any restart. The hash is SplitMix64's finaliser chained over
// the words; the stream is SplitMix64 (Steele, Lea, Flood 2014). Integer draws use rejection so
// they are exactly uniform; real draws use 53 bits. Results are identical on every platform.
//
// Header-only value types: not thread-safe (use one Rng per thread), trivially copyable.
#ifndef TECL_SERVICES_DATALOADER_SAMPLING_RNG_H_
#define TECL_SERVICES_DATALOADER_SAMPLING_RNG_H_

#include <cstdint>
#include <initializer_list>

namespace tecl::dataloader {

// What a key is used for; part of every key so that draws for different purposes differ.
enum class Purpose : uint64_t {
  kPermutation = 1,  // Epoch permutation of the split's videos.
  kFallback = 2,     // Start of a slot's replacement scan.
  kTemporal = 3,     // A group's speeds, directions, relation and offset.
  kStart = 4,        // A video's own t_A.
  kSpatial = 5,      // A clip's crop, flip and colour draw.
};

inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Hashes the words in order (an ordered key: {1, 2} and {2, 1} differ).
inline uint64_t HashKey(std::initializer_list<uint64_t> words) {
  uint64_t h = 0x6a09e667f3bcc909ULL;
  for (uint64_t word : words) h = Mix64(h ^ Mix64(word + 0x9e3779b97f4a7c15ULL));
  return h;
}

class Rng {
 public:
  explicit Rng(uint64_t key) : state_(key) {}

  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return Mix64(state_);
  }

  // Uniform integer in [0, n); n > 0.
  uint64_t Below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // Multiple of n.
    uint64_t x = Next();
    while (x >= limit) x = Next();
    return x % n;
  }

  // Uniform integer in [lo, hi]; lo <= hi.
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }

  // Uniform real in [0, 1).
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  // Uniform real in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Unit(); }

  bool Bernoulli(double p) { return p >= 1.0 || (p > 0.0 && Unit() < p); }

 private:
  uint64_t state_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_SAMPLING_RNG_H_
