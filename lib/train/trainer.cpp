#include "kdistill/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"
#include "kdistill/core/system.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/io/atomic_file.h"
#include "losses/kd_loss_impl.h"
#include "train/checked_file.h"
#include "train/progress.h"

namespace kdistill {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kCheckpointMagic = "KDISTILL-CKPT1";
constexpr uint64_t kShuffleStream = 1;
constexpr uint64_t kInitStream = 2;
// Fields that must agree between a checkpoint and the run resuming it.
const char* const kMetaFields[] = {"seed", "batch_size", "train_size", "steps_per_epoch"};

void validate(const TrainerOptions& o) {
  constexpr const char* fn = "TrainerOptions";
  const std::set<std::string> optimizers = {"sgd", "adam", "adamw"};
  const std::set<std::string> schedules = {"constant", "step", "cosine"};
  check(o.epochs() >= 0, fn, ": epochs must be >= 0, got ", o.epochs());
  check(o.max_steps() >= 0, fn, ": max_steps must be >= 0, got ", o.max_steps());
  check(o.batch_size() >= 1, fn, ": batch_size must be >= 1, got ", o.batch_size());
  check(optimizers.count(o.optimizer()) == 1, fn, ": optimizer must be sgd, adam or adamw, got \"", o.optimizer(), "\"");
  check(o.lr() > 0 && std::isfinite(o.lr()), fn, ": lr must be > 0, got ", o.lr());
  check(o.momentum() >= 0 && o.momentum() < 1, fn, ": momentum must be in [0, 1), got ", o.momentum());
  check(!o.nesterov() || o.momentum() > 0, fn, ": nesterov needs momentum > 0");
  check(o.weight_decay() >= 0 && std::isfinite(o.weight_decay()), fn, ": weight_decay must be >= 0, got ",
        o.weight_decay());
  check(schedules.count(o.schedule()) == 1, fn, ": schedule must be constant, step or cosine, got \"", o.schedule(), "\"");
  check(o.warmup_steps() >= 0, fn, ": warmup_steps must be >= 0, got ", o.warmup_steps());
  check(o.step_size() >= 0, fn, ": step_size must be >= 0, got ", o.step_size());
  check(o.gamma() > 0, fn, ": gamma must be > 0, got ", o.gamma());
  check(o.grad_clip_norm() >= 0, fn, ": grad_clip_norm must be >= 0, got ", o.grad_clip_norm());
  check(o.checkpoint_every() >= 0, fn, ": checkpoint_every must be >= 0, got ", o.checkpoint_every());
  check(o.checkpoint_every() == 0 || !o.output_dir().empty(), fn, ": checkpoint_every needs an output_dir");
  check(o.log_every() >= 0, fn, ": log_every must be >= 0, got ", o.log_every());
  check(o.eval_batch_size() >= 1, fn, ": eval_batch_size must be >= 1, got ", o.eval_batch_size());
  check(o.on_nonfinite() == "stop" || o.on_nonfinite() == "skip", fn, ": on_nonfinite must be stop or skip, got \"",
        o.on_nonfinite(), "\"");
  const auto& l = o.loss();
  check(l.temperature() > 0 && std::isfinite(l.temperature()), fn, ": loss temperature must be > 0, got ",
        l.temperature());
  check(l.alpha() >= 0 && l.alpha() <= 1, fn, ": loss alpha must be in [0, 1], got ", l.alpha());
  check(l.ignore_index() == -1, fn, ": loss ignore_index must be -1 (the data sets' mark for no label), got ",
        l.ignore_index());
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainerOptions& o, const std::vector<torch::Tensor>& params) {
  namespace optim = torch::optim;
  if (o.optimizer() == "adam") {
    return std::make_unique<optim::Adam>(params, optim::AdamOptions(o.lr()).weight_decay(o.weight_decay()));
  }
  if (o.optimizer() == "adamw") {
    return std::make_unique<optim::AdamW>(params, optim::AdamWOptions(o.lr()).weight_decay(o.weight_decay()));
  }
  return std::make_unique<optim::SGD>(
      params, optim::SGDOptions(o.lr()).momentum(o.momentum()).nesterov(o.nesterov()).weight_decay(o.weight_decay()));
}

double scheduled_lr(const TrainerOptions& o, int64_t step, int64_t total, int64_t steps_per_epoch) {
  const int64_t warm = o.warmup_steps();
  if (step < warm) return o.lr() * static_cast<double>(step + 1) / static_cast<double>(warm);
  const int64_t t = step - warm;
  if (o.schedule() == "step") {
    const int64_t every = o.step_size() > 0 ? o.step_size() : steps_per_epoch;
    return o.lr() * std::pow(o.gamma(), static_cast<double>(t / every));
  }
  if (o.schedule() == "cosine") {
    const int64_t span = std::max<int64_t>(1, total - warm);
    return o.lr() * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(t) / static_cast<double>(span)));
  }
  return o.lr();
}

torch::Tensor bytes_to_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}

std::string tensor_to_bytes(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Row index of the first sample whose features hold a NaN or Inf, or -1.
int64_t first_nonfinite_row(const torch::Tensor& features) {
  if (!features.is_floating_point()) return -1;
  // Any NaN or Inf makes the sum non-finite. Summed in the features' own dtype: ~60-120 ms on
  // Fashion-MNIST's 47M floats, where sum(kDouble) (a converted copy first) and isfinite over
  // every element each cost ~1.15 s, paid by every fit() call. A sum that overflows without any
  // NaN or Inf only costs the exact scan below, which then finds nothing.
  if (std::isfinite(features.sum().item<double>())) return -1;
  auto bad = ~torch::isfinite(features.flatten(1)).all(1);
  if (!bad.any().item<bool>()) return -1;
  return bad.nonzero()[0][0].item<int64_t>();
}

// Teacher logits for every sample of `ds`, in batches, on the CPU.
torch::Tensor teacher_predict(Teacher& teacher, const data::TensorDataset& ds, int64_t batch) {
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < ds.size(); i += batch) {
    const int64_t len = std::min(batch, ds.size() - i);
    outs.push_back(teacher.logits(ds.features().narrow(0, i, len), torch::arange(i, i + len, torch::kLong)).cpu());
  }
  return torch::cat(outs);
}

}  // namespace

struct DistillTrainer::State {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<torch::Tensor> params;
  torch::Device device{torch::kCPU};
  // Position: the next batch to run is `batch` of `epoch`; `step` optimizer steps are done.
  int64_t step = 0, epoch = 0, batch = 0;
  int64_t train_size = 0, steps_per_epoch = 0;
  int64_t resumed_from = -1;
  bool resume_attempted = false;
  std::map<std::string, int64_t> checkpoint_meta;
  torch::Tensor rng_state;
  double current_lr = -1;
  std::function<void(const StepInfo&)> step_cb;
  std::function<void(const EpochMetrics&)> epoch_cb;
};

DistillTrainer::DistillTrainer(Model student, std::shared_ptr<Teacher> teacher, TrainerOptions options)
    : student_(std::move(student)), teacher_(std::move(teacher)), options_(std::move(options)),
      state_(std::make_shared<State>()) {
  check(student_.defined(), "DistillTrainer: the student model is empty");
  validate(options_);
  state_->device = parse_device(options_.device());
  student_.to(state_->device);
  state_->params = student_.parameters();
  check(!state_->params.empty(), "DistillTrainer: the student has no parameters to train");
  state_->optimizer = make_optimizer(options_, state_->params);
}

void DistillTrainer::on_step(std::function<void(const StepInfo&)> callback) { state_->step_cb = std::move(callback); }

void DistillTrainer::on_epoch(std::function<void(const EpochMetrics&)> callback) {
  state_->epoch_cb = std::move(callback);
}

void DistillTrainer::save_checkpoint(const std::string& path) const {
  const auto& st = *state_;
  c10::Dict<std::string, int64_t> meta;
  meta.insert("step", st.step);
  meta.insert("epoch", st.epoch);
  meta.insert("batch", st.batch);
  meta.insert("seed", static_cast<int64_t>(options_.seed()));
  meta.insert("batch_size", options_.batch_size());
  meta.insert("train_size", st.train_size);
  meta.insert("steps_per_epoch", st.steps_per_epoch);
  meta.insert("threads", torch::get_num_threads());

  c10::List<std::string> param_names, buffer_names;
  c10::List<at::Tensor> params, buffers;
  for (auto& [name, p] : student_.named_parameters()) {
    param_names.push_back(name);
    params.push_back(p.detach().cpu());
  }
  for (auto& [name, b] : student_.named_buffers()) {
    buffer_names.push_back(name);
    buffers.push_back(b.detach().cpu());
  }
  torch::serialize::OutputArchive opt_archive;
  st.optimizer->save(opt_archive);
  std::ostringstream opt_bytes;
  opt_archive.save_to(opt_bytes);

  c10::impl::GenericDict payload(c10::StringType::get(), c10::AnyType::get());
  payload.insert("format", int64_t{1});
  payload.insert("meta", meta);
  payload.insert("param_names", param_names);
  payload.insert("params", params);
  payload.insert("buffer_names", buffer_names);
  payload.insert("buffers", buffers);
  payload.insert("optimizer", bytes_to_tensor(opt_bytes.str()));
  payload.insert("rng", at::detail::getDefaultCPUGenerator().get_state());
  detail::write_checked_file(path, kCheckpointMagic, torch::pickle_save(payload));
}

bool DistillTrainer::resume(const std::string& path_arg) {
  auto& st = *state_;
  st.resume_attempted = true;
  std::string path = path_arg;
  if (path.empty()) {
    check(!options_.output_dir().empty(), "DistillTrainer::resume: no checkpoint path and no output_dir");
    path = (fs::path(options_.output_dir()) / "checkpoints" / "last.pt").string();
    if (!fs::exists(path)) return false;
  }
  auto bytes = detail::read_checked_file(path, kCheckpointMagic);
  // Parse everything into temporaries first: a bad checkpoint throws before anything changes.
  std::map<std::string, int64_t> meta;
  std::vector<std::string> pnames, bnames;
  std::vector<torch::Tensor> params, buffers;
  torch::Tensor opt_tensor, rng;
  try {
    auto root = torch::pickle_load(bytes).toGenericDict();
    check(root.at("format").toInt() == 1, "checkpoint ", path, " has an unknown format version");
    for (const auto& kv : root.at("meta").toGenericDict()) meta[kv.key().toStringRef()] = kv.value().toInt();
    for (const auto& v : root.at("param_names").toListRef()) pnames.push_back(v.toStringRef());
    for (const auto& v : root.at("params").toListRef()) params.push_back(v.toTensor());
    for (const auto& v : root.at("buffer_names").toListRef()) bnames.push_back(v.toStringRef());
    for (const auto& v : root.at("buffers").toListRef()) buffers.push_back(v.toTensor());
    opt_tensor = root.at("optimizer").toTensor();
    rng = root.at("rng").toTensor();
  } catch (const c10::Error& e) {
    fail("checkpoint ", path, " cannot be parsed: ", first_line(e.what_without_backtrace()));
  }
  for (const char* key : {"step", "epoch", "batch", "seed", "batch_size", "train_size", "steps_per_epoch", "threads"}) {
    check(meta.count(key) == 1, "checkpoint ", path, " lacks the field ", key);
  }
  auto cur_params = student_.named_parameters();
  auto cur_buffers = student_.named_buffers();
  auto match = [&](const char* what, const std::vector<std::pair<std::string, torch::Tensor>>& cur,
                   const std::vector<std::string>& names, const std::vector<torch::Tensor>& vals) {
    check(cur.size() == names.size() && names.size() == vals.size(), "checkpoint ", path, " has ", names.size(), " ",
          what, "s but the student has ", cur.size());
    for (size_t i = 0; i < cur.size(); ++i) {
      check(cur[i].first == names[i] && cur[i].second.sizes() == vals[i].sizes() &&
                cur[i].second.scalar_type() == vals[i].scalar_type(),
            "checkpoint ", path, " does not match the student: ", what, " ", names[i], " ", vals[i].sizes(), " vs ",
            cur[i].first, " ", cur[i].second.sizes());
    }
  };
  match("parameter", cur_params, pnames, params);
  match("buffer", cur_buffers, bnames, buffers);
  check(meta["seed"] == static_cast<int64_t>(options_.seed()), "checkpoint ", path, " was written with seed ",
        meta["seed"], ", this run has seed ", options_.seed());
  check(meta["batch_size"] == options_.batch_size(), "checkpoint ", path, " was written with batch_size ",
        meta["batch_size"], ", this run has batch_size ", options_.batch_size());
  // The optimizer is loaded into a fresh instance and swapped in only on success.
  auto optimizer = make_optimizer(options_, st.params);
  try {
    std::istringstream in(tensor_to_bytes(opt_tensor));
    torch::serialize::InputArchive archive;
    archive.load_from(in, st.device);
    optimizer->load(archive);
  } catch (const c10::Error& e) {
    fail("checkpoint ", path, ": optimizer state does not fit a ", options_.optimizer(), " optimizer over this student: ",
         first_line(e.what_without_backtrace()));
  }
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) cur_params[i].second.copy_(params[i]);
    for (size_t i = 0; i < buffers.size(); ++i) cur_buffers[i].second.copy_(buffers[i]);
  }
  st.optimizer = std::move(optimizer);
  st.current_lr = -1;
  st.step = meta["step"];
  st.epoch = meta["epoch"];
  st.batch = meta["batch"];
  st.checkpoint_meta = meta;
  st.rng_state = rng;
  st.resumed_from = st.step;
  if (options_.threads() > 0 && meta["threads"] != options_.threads()) {
    logger()->warn("checkpoint {} was written with {} threads, this run uses {}: the result will not be bitwise "
                   "identical to an uninterrupted run",
                   path, meta["threads"], options_.threads());
  }
  logger()->info("resuming from {} at step {} (epoch {}, batch {})", path, st.step, st.epoch + 1, st.batch);
  return true;
}

TrainResult DistillTrainer::fit(const data::TensorDataset& train, const data::TensorDataset* eval) {
  auto& st = *state_;
  constexpr const char* fn = "DistillTrainer::fit";
  const int64_t n = train.size();
  const int64_t classes = train.num_classes();
  check(n > 0, fn, ": the training set '", train.name(), "' is empty");
  check(options_.batch_size() <= n, fn, ": batch_size ", options_.batch_size(), " is larger than the training set (",
        n, " samples)");
  check(teacher_ || train.num_labelled() > 0, fn, ": no teacher and no labelled sample in '", train.name(),
        "': nothing to learn from");
  if (teacher_ && teacher_->samples() >= 0) {
    // Rows are looked up by sample index: any other count would misalign or fail mid-epoch.
    check(teacher_->samples() == n, fn, ": the teacher ", teacher_->describe(), " holds logits for ",
          teacher_->samples(), " samples but the training set '", train.name(), "' has ", n);
  }
  if (auto row = first_nonfinite_row(train.features()); row >= 0) {
    fail(fn, ": training set '", train.name(), "' has a NaN or infinite feature in sample ", row);
  }
  if (eval) {
    check(eval->size() > 0, fn, ": the evaluation set '", eval->name(), "' is empty");
    check(eval->sample_shape() == train.sample_shape(), fn, ": evaluation samples are ",
          torch::IntArrayRef(eval->sample_shape()), " but training samples are ", torch::IntArrayRef(train.sample_shape()));
    check(eval->num_classes() <= classes, fn, ": the evaluation set has ", eval->num_classes(),
          " classes, the training set ", classes);
  }
  set_threads(options_.threads());

  // Probe both models with two samples: a wrong output shape is refused before any training.
  {
    torch::NoGradGuard no_grad;
    auto probe = train.features().narrow(0, 0, std::min<int64_t>(2, n)).to(st.device);
    const bool was_training = student_.is_training();
    student_.eval();
    torch::Tensor out;
    try {
      out = student_.forward(probe);
    } catch (const c10::Error& e) {
      student_.train(was_training);
      fail(fn, ": the student cannot take inputs of shape ", probe.sizes(), ": ", first_line(e.what_without_backtrace()));
    }
    student_.train(was_training);
    check(out.dim() == 2 && out.size(0) == probe.size(0) && out.size(1) == classes, fn, ": the student returns shape ",
          out.sizes(), " for inputs ", probe.sizes(), "; expected [", probe.size(0), ", ", classes, "] (", classes,
          " classes in '", train.name(), "')");
    if (teacher_) {
      torch::Tensor t;
      try {
        t = teacher_->logits(probe, torch::arange(probe.size(0), torch::kLong));
      } catch (const c10::Error& e) {
        fail(fn, ": the teacher cannot take inputs of shape ", probe.sizes(), ": ", first_line(e.what_without_backtrace()));
      }
      check(t.dim() == 2 && t.size(0) == probe.size(0) && t.size(1) == classes, fn, ": the teacher returns shape ",
            t.sizes(), " for inputs ", probe.sizes(), "; expected [", probe.size(0), ", ", classes, "]");
    }
  }

  const int64_t batch_size = options_.batch_size();
  const int64_t spe = (n + batch_size - 1) / batch_size;
  int64_t total = options_.epochs() * spe;
  if (options_.max_steps() > 0) total = std::min(total, options_.max_steps());
  st.train_size = n;
  st.steps_per_epoch = spe;
  const bool resumed = st.resumed_from >= 0;
  if (resumed) {
    for (const char* key : kMetaFields) {
      const int64_t now = std::string(key) == "seed" ? static_cast<int64_t>(options_.seed())
                          : std::string(key) == "batch_size" ? batch_size
                          : std::string(key) == "train_size" ? n
                                                             : spe;
      check(st.checkpoint_meta[key] == now, fn, ": the checkpoint was written with ", key, " ", st.checkpoint_meta[key],
            ", this run has ", now);
    }
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(st.rng_state);
  } else {
    torch::manual_seed(data::mix_seed(options_.seed(), kInitStream));
  }

  // Output directory: metrics.jsonl keeps exactly the lines of the steps the checkpoint covers.
  std::string metrics_path, checkpoint_path;
  if (!options_.output_dir().empty()) {
    io::ensure_writable_dir(options_.output_dir());
    io::ensure_writable_dir((fs::path(options_.output_dir()) / "checkpoints").string());
    metrics_path = (fs::path(options_.output_dir()) / "metrics.jsonl").string();
    checkpoint_path = (fs::path(options_.output_dir()) / "checkpoints" / "last.pt").string();
    if (!resumed && !st.resume_attempted) {
      check(!fs::exists(checkpoint_path) && !fs::exists(metrics_path), fn, ": output directory ", options_.output_dir(),
            " already holds a run (", fs::exists(checkpoint_path) ? checkpoint_path : metrics_path,
            "); resume it or choose another directory");
    }
    std::string kept;
    for (const auto& line : io::read_lines(metrics_path)) {
      if (!resumed) break;
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;
      const bool keep = j.value("type", "") == "epoch" ? j.value("epoch", INT64_MAX) < st.epoch
                                                       : j.value("step", INT64_MAX) <= st.step;
      if (keep) kept += line + "\n";
    }
    if (fs::exists(metrics_path)) io::atomic_write_string(metrics_path, kept);
  }

  TrainResult result;
  result.resumed_from_step = st.resumed_from;
  torch::Tensor teacher_eval_logits;
  if (teacher_ && eval && teacher_->runs_on_inputs()) {
    teacher_eval_logits = teacher_predict(*teacher_, *eval, options_.eval_batch_size());
    result.teacher_accuracy = metrics::accuracy(teacher_eval_logits, eval->targets());
  }

  auto train_dev = st.device.is_cpu() ? train : train.to(st.device);
  const auto batch_opts = data::BatchOptions()
                              .batch_size(batch_size)
                              .shuffle(true)
                              .seed(data::mix_seed(options_.seed(), kShuffleStream))
                              .device(st.device);
  auto loss_opts = options_.loss();
  const bool all_labelled = train.num_labelled() == n;
  detail::ProgressBar progress(options_.progress(), total);
  double total_seconds = 0;
  int64_t total_samples = 0;
  bool have_eval = false;
  student_.train();

  while (st.epoch < options_.epochs() && st.step < total) {
    data::BatchIterator it(train_dev, batch_opts, st.epoch);
    double epoch_seconds = 0, loss_sum = 0;
    int64_t epoch_samples = 0, epoch_steps = 0;
    for (; st.batch < spe && st.step < total; ++st.batch) {
      const auto t0 = Clock::now();
      const double lr = scheduled_lr(options_, st.step, total, spe);
      if (lr != st.current_lr) {
        for (auto& group : st.optimizer->param_groups()) group.options().set_lr(lr);
        st.current_lr = lr;
      }
      auto b = it.batch(st.batch);
      auto logits = student_.forward(b.inputs);
      auto loss = teacher_ ? detail::kd_loss_unchecked(logits, teacher_->logits(b.inputs, b.indices), b.targets,
                                                       loss_opts, all_labelled)
                           : (all_labelled ? detail::plain_ce(logits, b.targets) : detail::hard_ce(logits, b.targets, -1));
      // Zero the gradient buffers in place rather than dropping them: fresh buffers every step
      // cost page faults, measured at ~0.5 ms per MLP-64 step on these machines (fit ran at half
      // the speed of a bare LibTorch loop). Written out because zero_grad() drops them in 2.x.
      for (auto& p : st.params) {
        if (p.grad().defined()) {
          p.mutable_grad().detach_();
          p.mutable_grad().zero_();
        }
      }
      loss.backward();
      const double value = loss.item<double>();
      if (std::isfinite(value)) {
        if (options_.grad_clip_norm() > 0) torch::nn::utils::clip_grad_norm_(st.params, options_.grad_clip_norm());
        st.optimizer->step();
      } else if (options_.on_nonfinite() == "stop") {
        progress.finish();
        fail("training: the loss became ", value, " at step ", st.step + 1, " (epoch ", st.epoch + 1, ", batch ",
             st.batch, "); ",
             checkpoint_path.empty() ? "no checkpoint was configured"
                                     : "the last good checkpoint is kept in " + checkpoint_path,
             ". Lower the learning rate or enable gradient clipping");
      } else {
        logger()->warn("step {}: loss is {}, update skipped", st.step + 1, value);
      }
      ++st.step;
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      epoch_seconds += seconds;
      epoch_samples += b.inputs.size(0);
      loss_sum += std::isfinite(value) ? value : 0.0;
      ++epoch_steps;
      progress.update(st.epoch, options_.epochs(), st.step, value, epoch_samples / std::max(epoch_seconds, 1e-9));
      if (st.step_cb) st.step_cb(StepInfo{st.epoch, st.step, st.batch, value, lr});
      if (!metrics_path.empty() && options_.log_every() > 0 && st.step % options_.log_every() == 0) {
        nlohmann::json line = {{"type", "step"}, {"step", st.step}, {"epoch", st.epoch}, {"loss", value}, {"lr", lr}};
        io::append_line(metrics_path, line.dump());
      }
      if (!checkpoint_path.empty() && options_.checkpoint_every() > 0 && st.step % options_.checkpoint_every() == 0 &&
          st.batch + 1 < spe) {
        ++st.batch;  // the checkpoint records the position after this batch
        save_checkpoint(checkpoint_path);
        --st.batch;
      }
    }
    progress.finish();
    total_seconds += epoch_seconds;
    total_samples += epoch_samples;

    EpochMetrics em;
    em.epoch = st.epoch;
    em.step = st.step;
    em.train_loss = epoch_steps > 0 ? loss_sum / static_cast<double>(epoch_steps) : 0.0;
    em.lr = st.current_lr;
    em.samples_per_s = epoch_seconds > 0 ? static_cast<double>(epoch_samples) / epoch_seconds : 0.0;
    if (eval) {
      em.eval = evaluate(student_, *eval, teacher_eval_logits, options_.eval_batch_size());
      result.final_eval = em.eval;
      have_eval = true;
    }
    // About ten epoch lines per run at info level (a 200-epoch baseline would flood the log);
    // every epoch at debug level.
    const int64_t every = std::max<int64_t>(1, options_.epochs() / 10);
    const bool loud = (em.epoch + 1) % every == 0 || em.epoch + 1 == options_.epochs();
    logger()->log(loud ? spdlog::level::info : spdlog::level::debug,
                  "epoch {}/{} step {} loss {:.4f} lr {:.4g} {:.0f} samples/s{}", st.epoch + 1, options_.epochs(),
                   st.step, em.train_loss, em.lr, em.samples_per_s,
                   eval ? fmt::format(" accuracy {:.4f}{}", em.eval.accuracy,
                                      em.eval.agreement >= 0 ? fmt::format(" agreement {:.4f}", em.eval.agreement) : "")
                        : "");
    if (st.batch >= spe) {
      ++st.epoch;
      st.batch = 0;
    }
    if (!metrics_path.empty()) {
      nlohmann::json line = {{"type", "epoch"},  {"epoch", em.epoch}, {"step", em.step}, {"train_loss", em.train_loss},
                             {"lr", em.lr},      {"samples_per_s", em.samples_per_s}};
      if (eval) {
        line["accuracy"] = em.eval.accuracy;
        line["nll"] = em.eval.nll;
        line["ece"] = em.eval.ece;
        if (em.eval.agreement >= 0) line["agreement"] = em.eval.agreement;
      }
      io::append_line(metrics_path, line.dump());
      save_checkpoint(checkpoint_path);
    }
    result.epochs.push_back(em);
    if (st.epoch_cb) st.epoch_cb(em);
  }
  result.steps = st.step;
  result.train_samples_per_s = total_seconds > 0 ? static_cast<double>(total_samples) / total_seconds : 0.0;
  if (eval && !have_eval) result.final_eval = evaluate(student_, *eval, teacher_eval_logits, options_.eval_batch_size());
  return result;
}

torch::Tensor predict(Model& model, const data::TensorDataset& dataset, int64_t batch_size) {
  check(batch_size >= 1, "predict: batch_size must be >= 1, got ", batch_size);
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.device();
  std::vector<torch::Tensor> outs;
  try {
    for (int64_t i = 0; i < dataset.size(); i += batch_size) {
      const int64_t len = std::min(batch_size, dataset.size() - i);
      outs.push_back(model.forward(dataset.features().narrow(0, i, len).to(device)).cpu());
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  return outs.empty() ? torch::Tensor() : torch::cat(outs);
}

metrics::Evaluation evaluate(Model& model, const data::TensorDataset& dataset, const torch::Tensor& teacher_logits,
                             int64_t batch_size) {
  return metrics::evaluate_logits(predict(model, dataset, batch_size), dataset.targets(), teacher_logits);
}

}  // namespace kdistill
