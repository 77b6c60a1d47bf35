// kdistill/losses: the distillation losses on torch.Tensor; autograd flows through them as
// through any torch function. Defaults come from KDLossOptions and the C++ signatures.
#include "bindings.h"

#include <optional>

#include "kdistill/losses/kd_loss.h"
#include "kdistill/losses/sparse.h"

namespace kdistill::python {

void bind_losses(py::module_& m) {
  const KDLossOptions defaults;
  m.def(
      "kd_loss",
      [](const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& y, double temperature, double alpha,
         int64_t ignore_index) {
        return kd_loss(s, t, y, KDLossOptions().temperature(temperature).alpha(alpha).ignore_index(ignore_index));
      },
      py::arg("student_logits"), py::arg("teacher_logits"), py::arg("targets"), py::kw_only(),
      py::arg("temperature") = defaults.temperature(), py::arg("alpha") = defaults.alpha(),
      py::arg("ignore_index") = defaults.ignore_index(),
      R"doc(Hinton et al.'s knowledge-distillation loss (a scalar tensor).

    loss = alpha * T^2 * (1/B) * sum_i KL(softmax(t_i/T) || softmax(s_i/T))
         + (1 - alpha) * (1/L) * sum_{i labelled} cross_entropy(s_i, y_i)

B is the batch size, L the number of samples whose target is not ignore_index (the hard term is 0
when L = 0). Logits are [B, C] (float32, float64 or bfloat16), targets an integer tensor [B].
Gradient flows to student_logits only. Raises kdistill.Error for bad shapes, values or options.

Example:
    loss = kdistill.kd_loss(student(x), teacher_logits, y, temperature=4.0, alpha=0.9)
    loss.backward())doc");

  m.def(
      "kd_soft_loss",
      [](const torch::Tensor& s, const torch::Tensor& t, double temperature) { return kd_soft_loss(s, t, temperature); },
      py::arg("student_logits"), py::arg("teacher_logits"), py::kw_only(), py::arg("temperature") = 4.0,
      "The soft term alone: T^2 * batchmean KL(softmax(t/T) || softmax(s/T)).");

  m.def(
      "soft_target_cross_entropy",
      [](const torch::Tensor& s, const torch::Tensor& t, double temperature) {
        return soft_target_cross_entropy(s, t, temperature);
      },
      py::arg("student_logits"), py::arg("teacher_logits"), py::kw_only(), py::arg("temperature") = 1.0,
      "Soft-target cross-entropy scaled by T^2: (1/B) * sum_i sum_c -softmax(t_i/T)_c * log_softmax(s_i/T)_c. "
      "Differs from kd_soft_loss by the teacher's entropy, a constant in the student's logits.");

  m.def(
      "logit_mse", [](const torch::Tensor& s, const torch::Tensor& t) { return logit_mse(s, t); },
      py::arg("student_logits"), py::arg("teacher_logits"),
      "Mean squared error between logits (Ba & Caruana 2014): (1/(B*C)) * sum (s - t)^2.");

  m.def(
      "masked_cross_entropy",
      [](const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index) {
        return masked_cross_entropy(logits, targets, ignore_index);
      },
      py::arg("logits"), py::arg("targets"), py::kw_only(), py::arg("ignore_index") = -1,
      "Cross-entropy averaged over the samples whose target is not ignore_index; 0 when there are none.");

  m.def(
      "topk_targets",
      [](const torch::Tensor& t, int64_t k) {
        auto r = topk_targets(t, k);
        return py::make_tuple(r.indices, r.log_probs, r.log_tail);
      },
      py::arg("teacher_logits"), py::arg("k"),
      R"doc(The top k classes of softmax(teacher_logits) ([..., C]), as a top-k cache stores them: a tuple
(indices [..., k], log_probs [..., k], log_tail [...]), log_tail the log of the probability outside
the top k (-inf when k = C).)doc");

  const DivergenceOptions div;
  m.def(
      "sparse_divergence_loss",
      [](const torch::Tensor& s, const torch::Tensor& indices, const torch::Tensor& log_probs,
         const torch::Tensor& log_tail, const std::string& kind, double temperature, double beta, double skew,
         const std::optional<torch::Tensor>& mask) {
        return sparse_divergence_loss(s, TopKTargets{indices, log_probs, log_tail},
                                      DivergenceOptions().kind(kind).temperature(temperature).beta(beta).skew(skew),
                                      mask ? *mask : torch::Tensor());
      },
      py::arg("student_logits"), py::arg("indices"), py::arg("log_probs"), py::arg("log_tail"), py::kw_only(),
      py::arg("kind") = div.kind(), py::arg("temperature") = div.temperature(), py::arg("beta") = div.beta(),
      py::arg("skew") = div.skew(), py::arg("mask") = py::none(),
      R"doc(A divergence (kind: kl, reverse_kl, jsd, tvd, skew_kl, skew_reverse_kl) between the student and a
sparse teacher, on k + 1 buckets: the teacher's top-k classes and one tail class holding the rest,
softened at `temperature` and multiplied by T^2; averaged over positions (or where mask is
non-zero). With k = C it is the dense divergence.

Example:
    idx, lp, tail = kdistill.topk_targets(teacher_logits, 4)
    loss = kdistill.sparse_divergence_loss(student_logits, idx, lp, tail, temperature=2.0))doc");
}

}  // namespace kdistill::python
