#pragma once

// Double-precision, element-by-element computations of the divergence formulas, written apart from
// the library (no LibTorch math): the independent expectation of the divergence and sparse tests.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace kdistill::test::formulas {

using Vec = std::vector<double>;

inline const std::vector<std::string> kKinds = {"kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl"};

/// softmax(x / T).
inline Vec softmax(const Vec& x, double T = 1.0) {
  double mx = -1e300, z = 0;
  for (double v : x) mx = std::max(mx, v / T);
  Vec p(x.size());
  for (size_t c = 0; c < x.size(); ++c) z += (p[c] = std::exp(x[c] / T - mx));
  for (auto& v : p) v /= z;
  return p;
}

/// KL(a || b), a class with a = 0 adding 0.
inline double kl(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t c = 0; c < a.size(); ++c) s += a[c] > 0 ? a[c] * std::log(a[c] / b[c]) : 0.0;
  return s;
}

/// w a + (1 - w) b.
inline Vec mix(const Vec& a, const Vec& b, double w) {
  Vec m(a.size());
  for (size_t c = 0; c < a.size(); ++c) m[c] = w * a[c] + (1 - w) * b[c];
  return m;
}

/// divergence.h's table for the teacher's p and the student's q (no T^2).
inline double divergence_of(const std::string& kind, const Vec& p, const Vec& q, double beta, double skew) {
  if (kind == "kl") return kl(p, q);
  if (kind == "reverse_kl") return kl(q, p);
  if (kind == "jsd") return beta * kl(p, mix(p, q, beta)) + (1 - beta) * kl(q, mix(p, q, beta));
  if (kind == "skew_kl") return kl(p, mix(p, q, skew));
  if (kind == "skew_reverse_kl") return kl(q, mix(q, p, skew));
  double d = 0;  // tvd
  for (size_t c = 0; c < p.size(); ++c) d += 0.5 * std::abs(p[c] - q[c]);
  return d;
}

/// Row r of a [N, C] view of x, as doubles.
inline Vec row(const torch::Tensor& x, int64_t r) {
  auto flat = x.detach().to(torch::kDouble).reshape({-1, x.size(-1)}).contiguous();
  return Vec(flat[r].data_ptr<double>(), flat[r].data_ptr<double>() + flat.size(1));
}

}  // namespace kdistill::test::formulas
