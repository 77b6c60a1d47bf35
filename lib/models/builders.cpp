#include "kdistill/models/builders.h"

#include <sstream>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/models/sequence.h"

namespace kdistill {
namespace nn = torch::nn;

nn::Sequential mlp(int64_t inputs, const std::vector<int64_t>& hidden, int64_t outputs, double dropout) {
  check(inputs > 0 && outputs > 0, "mlp: inputs and outputs must be > 0, got ", inputs, " and ", outputs);
  check(dropout >= 0 && dropout < 1, "mlp: dropout must be in [0, 1), got ", dropout);
  nn::Sequential net;
  net->push_back(nn::Flatten());
  int64_t width = inputs;
  for (auto h : hidden) {
    check(h > 0, "mlp: hidden widths must be > 0, got ", h);
    net->push_back(nn::Linear(width, h));
    net->push_back(nn::ReLU());
    if (dropout > 0) net->push_back(nn::Dropout(dropout));
    width = h;
  }
  net->push_back(nn::Linear(width, outputs));
  return net;
}

nn::Sequential cnn(const std::vector<int64_t>& sample_shape, const std::vector<int64_t>& widths, int64_t outputs,
                   int64_t fc, double dropout) {
  check(sample_shape.size() == 3, "cnn: sample_shape must be [C, H, W], got ", torch::IntArrayRef(sample_shape));
  check(!widths.empty(), "cnn: at least one convolution width is needed");
  check(dropout >= 0 && dropout < 1, "cnn: dropout must be in [0, 1), got ", dropout);
  int64_t channels = sample_shape[0], h = sample_shape[1], w = sample_shape[2];
  nn::Sequential net;
  for (auto c : widths) {
    check(c > 0, "cnn: widths must be > 0, got ", c);
    check(h >= 2 && w >= 2, "cnn: input ", torch::IntArrayRef(sample_shape), " is too small for ", widths.size(),
          " pooling stages");
    net->push_back(nn::Conv2d(nn::Conv2dOptions(channels, c, 3).padding(1)));
    net->push_back(nn::BatchNorm2d(c));
    net->push_back(nn::ReLU());
    net->push_back(nn::MaxPool2d(2));
    channels = c;
    h /= 2;
    w /= 2;
  }
  net->push_back(nn::Flatten());
  int64_t width = channels * h * w;
  if (fc > 0) {
    net->push_back(nn::Linear(width, fc));
    net->push_back(nn::ReLU());
    if (dropout > 0) net->push_back(nn::Dropout(dropout));
    width = fc;
  }
  net->push_back(nn::Linear(width, outputs));
  return net;
}

namespace {

std::vector<int64_t> parse_widths(const std::string& spec, const std::string& list) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    const std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    check(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos && item.size() < 10,
          "model spec \"", spec, "\": expected positive integer widths separated by commas, got \"", item, "\"");
    out.push_back(std::stoll(item));
    check(out.back() > 0, "model spec \"", spec, "\": widths must be > 0");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

Model build_model(const std::string& spec, const std::vector<int64_t>& sample_shape, int64_t classes, double dropout) {
  check(classes > 0, "build_model: classes must be > 0, got ", classes);
  check(!sample_shape.empty(), "build_model: sample_shape is empty");
  if (spec == "cnn") return Model(cnn(sample_shape, {32, 64}, classes, 256, dropout), spec);
  auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  check(colon != std::string::npos && (kind == "mlp" || kind == "cnn" || kind == "transformer" || kind == "gru"),
        "model spec \"", spec, "\": expected mlp:W1,W2,..., cnn:W1,W2,..., cnn, transformer:DIM,LAYERS,HEADS or "
        "gru:HIDDEN[,LAYERS]");
  auto widths = parse_widths(spec, spec.substr(colon + 1));
  check(!widths.empty(), "model spec \"", spec, "\": at least one width is needed");
  if (kind == "transformer" || kind == "gru") {
    // Language models: sample_shape is {L}, the positions of one input; classes the vocabulary.
    check(sample_shape.size() == 1, "model spec \"", spec, "\": a language model takes tokens [B, L], but samples are ",
          torch::IntArrayRef(sample_shape));
    if (kind == "gru") {
      check(widths.size() <= 2, "model spec \"", spec, "\": expected gru:HIDDEN or gru:HIDDEN,LAYERS");
      return gru_lm(GRULMOptions(classes).hidden(widths[0]).layers(widths.size() > 1 ? widths[1] : 1));
    }
    check(widths.size() == 3, "model spec \"", spec, "\": expected transformer:DIM,LAYERS,HEADS");
    return transformer_lm(TransformerLMOptions(classes, sample_shape[0])
                              .dim(widths[0]).layers(widths[1]).heads(widths[2]).dropout(dropout));
  }
  if (kind == "mlp") {
    int64_t inputs = 1;
    for (auto d : sample_shape) inputs *= d;
    return Model(mlp(inputs, widths, classes, dropout), spec);
  }
  return Model(cnn(sample_shape, widths, classes, 0, dropout), spec);
}

}  // namespace kdistill
