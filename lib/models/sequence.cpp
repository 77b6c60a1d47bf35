#include "kdistill/models/sequence.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <string>

#include "kdistill/core/error.h"

namespace kdistill {
namespace {

// TorchScript source needs float literals that read back exactly.
std::string literal(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  auto text = s.str();
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

// A module made in C++ has no `training` flag until it is given one (train()/eval() and dropout
// read it).
torch::jit::Module script_module(const char* name) {
  torch::jit::Module m(name);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

void add(torch::jit::Module& m, const std::string& name, torch::Tensor value) {
  m.register_parameter(name, value.requires_grad_(true), /*is_buffer=*/false);
}

torch::Tensor normal(std::vector<int64_t> shape, double std) { return torch::randn(shape) * std; }

}  // namespace

Model transformer_lm(const TransformerLMOptions& o) {
  constexpr const char* fn = "transformer_lm";
  check(o.vocab_size() >= 1 && o.context() >= 1 && o.dim() >= 1 && o.layers() >= 1 && o.heads() >= 1 &&
            o.mlp_ratio() >= 1,
        fn, ": vocab_size, context, dim, layers, heads and mlp_ratio must be >= 1");
  check(o.dim() % o.heads() == 0, fn, ": dim ", o.dim(), " is not a multiple of heads ", o.heads());
  check(o.dropout() >= 0 && o.dropout() < 1, fn, ": dropout must be in [0, 1), got ", o.dropout());
  torch::NoGradGuard no_grad;
  const int64_t d = o.dim(), hidden = o.mlp_ratio() * d, head_dim = d / o.heads();
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(o.layers()));
  auto m = script_module("__torch__.kdistill.TransformerLM");
  add(m, "tok_emb", normal({o.vocab_size(), d}, 0.02));
  add(m, "pos_emb", normal({o.context(), d}, 0.02));
  for (int64_t l = 0; l < o.layers(); ++l) {
    const auto p = "b" + std::to_string(l) + "_";
    add(m, p + "ln1_w", torch::ones({d}));
    add(m, p + "ln1_b", torch::zeros({d}));
    add(m, p + "qkv_w", normal({3 * d, d}, 0.02));
    add(m, p + "qkv_b", torch::zeros({3 * d}));
    add(m, p + "proj_w", normal({d, d}, residual_std));
    add(m, p + "proj_b", torch::zeros({d}));
    add(m, p + "ln2_w", torch::ones({d}));
    add(m, p + "ln2_b", torch::zeros({d}));
    add(m, p + "fc1_w", normal({hidden, d}, 0.02));
    add(m, p + "fc1_b", torch::zeros({hidden}));
    add(m, p + "fc2_w", normal({d, hidden}, residual_std));
    add(m, p + "fc2_b", torch::zeros({d}));
  }
  add(m, "lnf_w", torch::ones({d}));
  add(m, "lnf_b", torch::zeros({d}));
  add(m, "head_w", normal({o.vocab_size(), d}, 0.02));
  add(m, "head_b", torch::zeros({o.vocab_size()}));

  const auto D = std::to_string(d), H = std::to_string(o.heads()), Dh = std::to_string(head_dim);
  const auto p_drop = literal(o.dropout());
  std::ostringstream src;
  src << "def context(self) -> int:\n  return " << o.context() << "\n"
      << "def block(self, x: Tensor, mask: Tensor, ln1_w: Tensor, ln1_b: Tensor, qkv_w: Tensor, qkv_b: Tensor,\n"
      << "          proj_w: Tensor, proj_b: Tensor, ln2_w: Tensor, ln2_b: Tensor, fc1_w: Tensor, fc1_b: Tensor,\n"
      << "          fc2_w: Tensor, fc2_b: Tensor) -> Tensor:\n"
      << "  B = x.size(0)\n  L = x.size(1)\n"
      << "  h = torch.layer_norm(x, [" << D << "], ln1_w, ln1_b, 1e-5)\n"
      << "  qkv = torch.linear(h, qkv_w, qkv_b).view(B, L, 3, " << H << ", " << Dh << ").permute(2, 0, 3, 1, 4)\n"
      << "  att = torch.matmul(qkv[0], qkv[1].transpose(-2, -1)) * " << literal(1.0 / std::sqrt(double(head_dim)))
      << "\n"
      << "  att = torch.softmax(att.masked_fill(mask, float('-inf')), -1)\n"
      << "  y = torch.matmul(att, qkv[2]).transpose(1, 2).reshape(B, L, " << D << ")\n"
      << "  x = x + torch.dropout(torch.linear(y, proj_w, proj_b), " << p_drop << ", self.training)\n"
      << "  h = torch.layer_norm(x, [" << D << "], ln2_w, ln2_b, 1e-5)\n"
      << "  h = torch.linear(torch.gelu(torch.linear(h, fc1_w, fc1_b)), fc2_w, fc2_b)\n"
      << "  return x + torch.dropout(h, " << p_drop << ", self.training)\n"
      << "def forward(self, tokens: Tensor) -> Tensor:\n"
      << "  L = tokens.size(1)\n"
      << "  x = torch.embedding(self.tok_emb, tokens) + self.pos_emb[:L]\n"
      << "  pos = torch.arange(L, device=tokens.device)\n"
      << "  mask = pos.unsqueeze(0) > pos.unsqueeze(1)\n";  // [i, j]: j is after i
  for (int64_t l = 0; l < o.layers(); ++l) {
    const auto p = "self.b" + std::to_string(l) + "_";
    src << "  x = self.block(x, mask, " << p << "ln1_w, " << p << "ln1_b, " << p << "qkv_w, " << p << "qkv_b, " << p
        << "proj_w, " << p << "proj_b, " << p << "ln2_w, " << p << "ln2_b, " << p << "fc1_w, " << p << "fc1_b, " << p
        << "fc2_w, " << p << "fc2_b)\n";
  }
  src << "  x = torch.layer_norm(x, [" << D << "], self.lnf_w, self.lnf_b, 1e-5)\n"
      << "  return torch.linear(x, self.head_w, self.head_b)\n";
  m.define(src.str());
  std::ostringstream arch;
  arch << "transformer:" << d << "," << o.layers() << "," << o.heads();
  return Model(std::move(m), arch.str());
}

Model gru_lm(const GRULMOptions& o) {
  constexpr const char* fn = "gru_lm";
  check(o.vocab_size() >= 1 && o.hidden() >= 1 && o.layers() >= 1, fn,
        ": vocab_size, hidden and layers must be >= 1, got ", o.vocab_size(), ", ", o.hidden(), ", ", o.layers());
  torch::NoGradGuard no_grad;
  const int64_t h = o.hidden();
  const double bound = 1.0 / std::sqrt(static_cast<double>(h));
  auto uniform = [&](std::vector<int64_t> shape) { return torch::rand(shape) * (2 * bound) - bound; };
  auto m = script_module("__torch__.kdistill.GRULM");
  add(m, "emb", normal({o.vocab_size(), h}, 0.02));
  std::string params;
  for (int64_t l = 0; l < o.layers(); ++l) {
    const auto s = std::to_string(l);
    add(m, "w_ih_l" + s, uniform({3 * h, h}));
    add(m, "w_hh_l" + s, uniform({3 * h, h}));
    add(m, "b_ih_l" + s, uniform({3 * h}));
    add(m, "b_hh_l" + s, uniform({3 * h}));
    params += (l ? ", " : "") + std::string("self.w_ih_l") + s + ", self.w_hh_l" + s + ", self.b_ih_l" + s +
              ", self.b_hh_l" + s;
  }
  add(m, "head_w", uniform({o.vocab_size(), h}));
  add(m, "head_b", uniform({o.vocab_size()}));
  const auto H = std::to_string(h), layers = std::to_string(o.layers());
  std::ostringstream src;
  src << "def initial_state(self, batch: int) -> Tensor:\n"
      << "  return torch.zeros([" << layers << ", batch, " << H << "], dtype=self.emb.dtype, device=self.emb.device)\n"
      << "def step(self, tokens: Tensor, h: Tensor) -> Tuple[Tensor, Tensor]:\n"
      << "  x = torch.embedding(self.emb, tokens)\n"
      << "  y, h = torch.gru(x, h.to(x.dtype), [" << params << "], True, " << layers
      << ", 0.0, self.training, False, True)\n"
      << "  return torch.linear(y, self.head_w, self.head_b), h\n"
      << "def forward(self, tokens: Tensor) -> Tensor:\n"
      << "  logits, h = self.step(tokens, self.initial_state(tokens.size(0)))\n"
      << "  return logits\n";
  m.define(src.str());
  return Model(std::move(m), "gru:" + H + "," + layers);
}

}  // namespace kdistill
