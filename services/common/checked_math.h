// Integer arithmetic that reports overflow instead of wrapping: every product or sum of numbers
// that come from a request, a spec or a file goes through these before it sizes a buffer, a loop
// or an index.
//
//   std::optional<int64_t> bytes = CheckedMul<int64_t>(clips, clip_bytes);
//   if (!bytes || *bytes > limit) return absl::InvalidArgumentError(...);
//
// Header-only; pure functions, thread-safe.
#ifndef TECL_SERVICES_COMMON_CHECKED_MATH_H_
#define TECL_SERVICES_COMMON_CHECKED_MATH_H_

#include <initializer_list>
#include <optional>
#include <type_traits>

namespace tecl {

// a + b, or nullopt when it does not fit T.
template <typename T>
std::optional<T> CheckedAdd(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T sum;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// a * b, or nullopt when it does not fit T.
template <typename T>
std::optional<T> CheckedMul(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// The product of every factor, or nullopt when any partial product does not fit T.
template <typename T>
std::optional<T> CheckedProduct(std::initializer_list<T> factors) {
  T product = 1;
  for (T factor : factors) {
    if (__builtin_mul_overflow(product, factor, &product)) return std::nullopt;
  }
  return product;
}

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_CHECKED_MATH_H_
