// Workload generation for kvbench: which key and which operation comes next.
//
// KeyChooser picks key indexes in [0, n) uniformly or from a Zipfian
// distribution (YCSB's generator, Gray et al., "Quickly generating
// billion-record synthetic databases"), with the popular keys scattered over
// the key space by a hash so that they do not cluster in one partition.
//
// Thread-safety: a KeyChooser is immutable after construction and may be
// shared; each thread passes its own random engine.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

namespace ringkv::bench {

enum class Distribution { kUniform, kZipfian };

class KeyChooser {
 public:
  static constexpr double kTheta = 0.99;  // YCSB's default skew

  KeyChooser(uint64_t n, Distribution dist) : n_(n), dist_(dist) {
    if (dist_ != Distribution::kZipfian) return;
    for (uint64_t i = 1; i <= n_; ++i) zeta_n_ += 1.0 / std::pow(static_cast<double>(i), kTheta);
    double zeta2 = 1.0 + 1.0 / std::pow(2.0, kTheta);
    alpha_ = 1.0 / (1.0 - kTheta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n_), 1.0 - kTheta)) / (1.0 - zeta2 / zeta_n_);
  }

  // The next key index; with Zipfian, rank r (0 = most popular) is scattered.
  template <typename Rng>
  uint64_t Next(Rng& rng) const {
    if (dist_ == Distribution::kUniform)
      return std::uniform_int_distribution<uint64_t>(0, n_ - 1)(rng);
    return Scatter(Rank(std::uniform_real_distribution<double>(0.0, 1.0)(rng)));
  }

  // The Zipfian rank for a uniform draw u in [0, 1): 0 is the most popular.
  uint64_t Rank(double u) const {
    double uz = u * zeta_n_;
    if (uz < 1.0) return 0;
    if (uz < 1.0 + std::pow(0.5, kTheta)) return 1;
    auto r =
        static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return r >= n_ ? n_ - 1 : r;
  }

  uint64_t Scatter(uint64_t rank) const {
    uint64_t x = rank + 0x9e3779b97f4a7c15ULL;  // splitmix64 finaliser
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (x ^ (x >> 31)) % n_;
  }

  uint64_t size() const { return n_; }

 private:
  uint64_t n_;
  Distribution dist_;
  double zeta_n_ = 0, alpha_ = 0, eta_ = 0;
};

// The key text for index i: fixed width so every key has the same size.
inline std::string KeyName(uint64_t i) {
  std::string digits = std::to_string(i);
  return "key" + std::string(digits.size() < 10 ? 10 - digits.size() : 0, '0') + digits;
}

}  // namespace ringkv::bench
