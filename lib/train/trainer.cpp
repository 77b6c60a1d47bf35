#include "kdistill/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"
#include "kdistill/core/system.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/train/distributed.h"
#include "train/checkpoint.h"
#include "train/metrics_log.h"
#include "train/preflight.h"
#include "train/progress.h"
#include "train/reducer.h"
#include "train/step.h"

namespace kdistill {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kShuffleStream = 1;
constexpr uint64_t kInitStream = 2;

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

std::shared_ptr<Objective> default_objective(const TrainerOptions& o, bool has_teacher) {
  if (has_teacher) return std::make_shared<KDObjective>(o.loss());
  return std::make_shared<CrossEntropyObjective>();
}

// Rows [rank * n / W, (rank + 1) * n / W) of `dataset`: this rank's share of an evaluation.
data::TensorDataset shard(const data::TensorDataset& dataset, const ProcessGroup* group) {
  if (group == nullptr) return dataset;
  const int64_t n = dataset.size(), r = group->rank(), w = group->size();
  return dataset.slice(r * n / w, (r + 1) * n / w);
}

// The comma-separated names preflight returns, as a list.
std::vector<std::string> split_names(const std::string& joined) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start < joined.size()) {
    size_t end = joined.find(',', start);
    if (end == std::string::npos) end = joined.size();
    auto name = joined.substr(start, end - start);
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    if (!name.empty()) names.push_back(name);
    start = end + 1;
  }
  return names;
}

std::string optimizer_bytes(const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

}  // namespace

struct DistillTrainer::State {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<torch::Tensor> params;  // the student's, then the objective's
  torch::Device device{torch::kCPU};
  // Position: the next batch to run is `batch` of `epoch`; `step` optimizer steps are done.
  int64_t step = 0, epoch = 0, batch = 0;
  int64_t train_size = 0, steps_per_epoch = 0;
  int64_t block_rows = 0;  // a streamed teacher's: the shuffle is by blocks of rows
  int64_t resumed_from = -1;
  bool resume_attempted = false;
  std::shared_ptr<detail::Checkpoint> checkpoint;  // the one resumed from, until fit() checks it against the data
  std::string objective_terms;                     // the objective's term names, from the probe
  double current_lr = -1;
  std::function<void(const StepInfo&)> step_cb;
  std::function<void(const EpochMetrics&)> epoch_cb;
};

DistillTrainer::DistillTrainer(Model student, std::shared_ptr<Teacher> teacher, TrainerOptions options)
    : student_(std::move(student)), teacher_(std::move(teacher)), options_(std::move(options)),
      state_(std::make_shared<State>()) {
  check(student_.defined(), "DistillTrainer: the student model is empty");
  detail::validate_options(options_);
  objective_ = options_.objective() ? options_.objective() : default_objective(options_, teacher_ != nullptr);
  state_->device = parse_device(options_.device());
  student_.to(state_->device);
  objective_->to(state_->device);
  state_->params = student_.parameters();
  check(!state_->params.empty(), "DistillTrainer: the student has no parameters to train");
  for (auto& p : objective_->parameters(/*recurse=*/true)) state_->params.push_back(p);
  state_->optimizer = make_optimizer(options_, state_->params);
}

void DistillTrainer::on_step(std::function<void(const StepInfo&)> callback) { state_->step_cb = std::move(callback); }

void DistillTrainer::on_epoch(std::function<void(const EpochMetrics&)> callback) {
  state_->epoch_cb = std::move(callback);
}

void DistillTrainer::save_checkpoint(const std::string& path) const { write_checkpoint_file(path, {}); }

void DistillTrainer::write_checkpoint_file(const std::string& path, const torch::Tensor& rank_rng) const {
  const auto& st = *state_;
  const std::map<std::string, int64_t> meta = {{"step", st.step},
                                               {"epoch", st.epoch},
                                               {"batch", st.batch},
                                               {"seed", static_cast<int64_t>(options_.seed())},
                                               {"batch_size", options_.batch_size()},
                                               {"train_size", st.train_size},
                                               {"steps_per_epoch", st.steps_per_epoch},
                                               {"threads", torch::get_num_threads()},
                                               {"student_bf16", options_.precision().student() == Precision::kBFloat16},
                                               {"world_size", options_.process_group() ? options_.process_group()->size() : 1},
                                               {"shuffle_block_rows", st.block_rows}};
  detail::write_checkpoint(path, meta, student_, *objective_, optimizer_bytes(*st.optimizer), st.objective_terms,
                           rank_rng);
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
  // Everything is parsed and checked before anything changes.
  auto ckpt = std::make_shared<detail::Checkpoint>(detail::read_checkpoint(path));
  detail::check_compatible(*ckpt, student_, *objective_,
                           {{"seed", static_cast<int64_t>(options_.seed())},
                            {"batch_size", options_.batch_size()},
                            {"student_bf16", options_.precision().student() == Precision::kBFloat16}});
  // The optimizer is loaded into a fresh instance and swapped in only on success.
  auto optimizer = make_optimizer(options_, st.params);
  try {
    std::istringstream in(ckpt->optimizer);
    torch::serialize::InputArchive archive;
    archive.load_from(in, st.device);
    optimizer->load(archive);
  } catch (const c10::Error& e) {
    fail("checkpoint ", path, ": optimizer state does not fit a ", options_.optimizer(),
         " optimizer over this student and objective: ", first_line(e.what_without_backtrace()));
  }
  detail::restore_tensors(*ckpt, student_, *objective_);
  st.optimizer = std::move(optimizer);
  st.current_lr = -1;
  st.step = ckpt->meta.at("step");
  st.epoch = ckpt->meta.at("epoch");
  st.batch = ckpt->meta.at("batch");
  st.resumed_from = st.step;
  const int64_t threads = ckpt->meta.at("threads");
  if (options_.threads() > 0 && threads != options_.threads()) {
    logger()->warn("checkpoint {} was written with {} threads, this run uses {}: the result will not be bitwise "
                   "identical to an uninterrupted run",
                   path, threads, options_.threads());
  }
  st.checkpoint = std::move(ckpt);
  logger()->info("resuming from {} at step {} (epoch {}, batch {})", path, st.step, st.epoch + 1, st.batch);
  return true;
}

TrainResult DistillTrainer::fit(const data::TensorDataset& train, const data::TensorDataset* eval) {
  auto& st = *state_;
  constexpr const char* fn = "DistillTrainer::fit";
  const int64_t n = train.size();
  const int64_t batch_size = options_.batch_size();
  ProcessGroup* group = options_.process_group().get();
  const int64_t rank = group ? group->rank() : 0, world = group ? group->size() : 1;
  check(batch_size >= world, fn, ": batch_size ", batch_size, " is smaller than the ", world,
        " processes: every rank needs a share of each batch");
  st.objective_terms = detail::preflight(student_, teacher_.get(), *objective_, train, eval, batch_size, st.device);
  set_threads(options_.threads());
  if (teacher_) teacher_->set_precision(options_.precision().teacher());
  warn_if_bf16_is_slow(options_.precision().teacher(), st.device);
  warn_if_bf16_is_slow(options_.precision().student(), st.device);

  const int64_t spe = (n + batch_size - 1) / batch_size;
  int64_t total = options_.epochs() * spe;
  if (options_.max_steps() > 0) total = std::min(total, options_.max_steps());
  st.train_size = n;
  st.steps_per_epoch = spe;
  // A streamed teacher's blocks set the shuffle; one block of every row shuffles as rows do.
  const int64_t teacher_blocks = teacher_ ? teacher_->block_rows() : 0;
  st.block_rows = teacher_blocks < n ? teacher_blocks : 0;
  const bool resumed = st.resumed_from >= 0;
  if (resumed) {
    const int64_t was_blocks = st.checkpoint->meta.count("shuffle_block_rows") ? st.checkpoint->meta.at("shuffle_block_rows") : 0;
    check(was_blocks == st.block_rows, fn, ": checkpoint ", st.checkpoint->path, " was written shuffling ",
          was_blocks > 0 ? "blocks of " + std::to_string(was_blocks) + " rows (a streamed cache)" : std::string("every row"),
          ", this run shuffles ",
          st.block_rows > 0 ? "blocks of " + std::to_string(st.block_rows) + " rows (a streamed cache)" : std::string("every row"),
          ": the rest of the epoch would visit other rows; read the cache as the run that wrote it did");
    const auto& was = st.checkpoint->objective_terms;
    check(was.empty() || was == st.objective_terms, fn, ": checkpoint ", st.checkpoint->path,
          " was written by an objective with the terms [", was, "], this run's has [", st.objective_terms, "]");
    detail::check_compatible(*st.checkpoint, student_, *objective_,
                             {{"seed", static_cast<int64_t>(options_.seed())},
                              {"batch_size", batch_size},
                              {"train_size", n},
                              {"steps_per_epoch", spe}});
    const int64_t was_world = st.checkpoint->meta.count("world_size") ? st.checkpoint->meta.at("world_size") : 1;
    // Each rank continues its own generator (dropout) when the world size is the same.
    const auto& rank_rng = st.checkpoint->rank_rng;
    const bool own = group && was_world == world && rank_rng.defined() && rank_rng.size(0) == world;
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(own ? rank_rng[rank].contiguous() : st.checkpoint->rng);
    if (was_world != world) {
      logger()->info("resuming a run of {} process(es) with {}: the global batch stays {}; the result equals the "
                     "uninterrupted run's up to float rounding, not bitwise",
                     was_world, world, batch_size);
    }
    st.checkpoint.reset();  // its tensors are in the student and the optimizer now
  } else {
    torch::manual_seed(data::mix_seed(options_.seed(), kInitStream));
  }
  if (group) {
    // Every rank must stand at the same step (a rank that could not read rank 0's checkpoint
    // would start afresh); then rank 0's weights become everyone's.
    auto steps = torch::zeros({world}, torch::kLong);
    steps[rank] = st.step;
    std::vector<torch::Tensor> t{steps.to(st.device)};
    group->all_reduce_sum(t, "the start of training");
    steps = t[0].cpu();
    for (int64_t r = 0; r < world; ++r) {
      check(steps[r].item<int64_t>() == steps[0].item<int64_t>(), fn, ": rank ", r, " starts at step ",
            steps[r].item<int64_t>(), " but rank 0 at step ", steps[0].item<int64_t>(),
            ": every rank must read the checkpoint rank 0 resumes from (put the output directory on a "
            "file system all hosts share)");
    }
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> state;
    for (auto& p : st.params) state.push_back(p);
    for (auto& [name, b] : student_.named_buffers()) state.push_back(b);
    group->broadcast(state, 0, "the broadcast of rank 0's parameters");
  }

  // Output directory: metrics.jsonl keeps exactly the lines of the steps the checkpoint covers.
  std::string checkpoint_path;
  detail::MetricsLog log;
  if (!options_.output_dir().empty() && rank == 0) {
    const fs::path dir(options_.output_dir());
    io::ensure_writable_dir(dir.string());
    io::ensure_writable_dir((dir / "checkpoints").string());
    const auto metrics_path = (dir / "metrics.jsonl").string();
    checkpoint_path = (dir / "checkpoints" / "last.pt").string();
    if (!resumed && !st.resume_attempted) {
      check(!fs::exists(checkpoint_path) && !fs::exists(metrics_path), fn, ": output directory ", options_.output_dir(),
            " already holds a run (", fs::exists(checkpoint_path) ? checkpoint_path : metrics_path,
            "); resume it or choose another directory");
    }
    log = detail::MetricsLog(metrics_path, resumed ? st.step : -1, st.epoch);
  }

  // A checkpoint is collective: every rank's generator state goes into rank 0's file.
  const bool checkpoints = !options_.output_dir().empty();
  auto checkpoint_now = [&] {
    torch::Tensor rank_rng;
    if (group) {
      rank_rng = group->all_gather_rows(at::detail::getDefaultCPUGenerator().get_state().unsqueeze(0),
                                        "gathering the ranks' generator states for a checkpoint");
    }
    if (rank == 0) write_checkpoint_file(checkpoint_path, rank_rng);
  };

  TrainResult result;
  result.resumed_from_step = st.resumed_from;
  torch::Tensor teacher_eval_logits;
  if (teacher_ && eval && teacher_->runs_on_inputs()) {
    teacher_eval_logits = compute_teacher_logits(*teacher_, shard(*eval, group), options_.eval_batch_size());
    if (group) teacher_eval_logits = group->all_gather_rows(teacher_eval_logits, "gathering the teacher's evaluation");
    result.teacher_accuracy = metrics::evaluate_logits(teacher_eval_logits, eval->targets()).accuracy;
  }

  auto train_dev = st.device.is_cpu() ? train : train.to(st.device);
  const auto batch_opts = data::BatchOptions()
                              .batch_size(batch_size)
                              .shuffle(true)
                              .seed(data::mix_seed(options_.seed(), kShuffleStream))
                              .device(st.device)
                              .block_rows(st.block_rows);
  const bool all_labelled = train.num_labelled() == n;
  detail::TrainStep step(student_, teacher_.get(), *objective_, st.params, options_.precision().student(), st.device);
  step.set_accumulation(options_.micro_batches(), options_.token_reduction());
  std::unique_ptr<detail::GradientReducer> reducer;
  if (group) {
    check(options_.bucket_mb() > 0, "training: bucket_mb must be > 0, got ", options_.bucket_mb());
    reducer = std::make_unique<detail::GradientReducer>(*group, st.params, split_names(st.objective_terms),
                                                        static_cast<int64_t>(options_.bucket_mb() * (1 << 20)) + 1);
    step.set_before_last_backward([&] { reducer->arm(st.step + 1); });
  }
  // The student on the evaluation set: each rank scores its share, and every rank gets all scores.
  auto evaluate_student = [&] {
    if (!group) return evaluate(student_, *eval, teacher_eval_logits, options_.eval_batch_size());
    auto logits = predict(student_, shard(*eval, group), options_.eval_batch_size());
    logits = group->all_gather_rows(logits, "gathering the student's evaluation");
    return metrics::evaluate_logits(logits, eval->targets(), teacher_eval_logits);
  };
  detail::ProgressBar progress(options_.progress() && rank == 0, total);
  int64_t steps_run = 0;
  double total_seconds = 0;
  int64_t total_samples = 0;
  bool have_eval = false;
  student_.train();
  objective_->train();

  while (st.epoch < options_.epochs() && st.step < total) {
    data::BatchIterator it(train_dev, batch_opts, st.epoch);
    if (teacher_blocks > 0) {
      // A streamed teacher reads ahead in the order this process will ask for its rows.
      std::vector<torch::Tensor> plan;
      for (int64_t i = st.batch; i < spe; ++i) plan.push_back(group ? it.indices(i, rank, world) : it.indices(i));
      if (!plan.empty()) teacher_->plan(torch::cat(plan));
    }
    double epoch_seconds = 0, loss_sum = 0;
    std::map<std::string, double> term_sums;
    int64_t epoch_samples = 0, epoch_steps = 0;
    for (; st.batch < spe && st.step < total; ++st.batch) {
      const auto t0 = Clock::now();
      const double lr = scheduled_lr(options_, st.step, total, spe);
      if (lr != st.current_lr) {
        for (auto& param_group : st.optimizer->param_groups()) param_group.options().set_lr(lr);
        st.current_lr = lr;
      }
      auto b = group ? it.batch(st.batch, rank, world) : it.batch(st.batch);
      double denominator = 0;  // this batch's own, for one process
      int64_t batch_rows = b.inputs.size(0);
      if (group) {
        // The global batch's: the ranks' gradients then sum to the global batch's gradient.
        const auto rows = it.indices(st.batch);
        batch_rows = rows.size(0);
        denominator = train.is_sequence() ? step.denominator(train.targets().index_select(0, rows))
                                          : static_cast<double>(batch_rows);
      }
      auto outcome = step.compute(b, TrainProgress{st.step, st.epoch, total, spe}, all_labelled, denominator);
      if (reducer) reducer->reduce(outcome, st.step + 1);
      const double value = outcome.loss;
      if (outcome.finite) {
        step.apply(*st.optimizer, options_.grad_clip_norm());
      } else if (options_.on_nonfinite() == "stop") {
        progress.finish();
        fail("training: the loss became ", value, " at step ", st.step + 1, " (epoch ", st.epoch + 1, ", batch ",
             st.batch, "); ",
             !checkpoints ? "no checkpoint was configured"
                          : "the last good checkpoint is kept in " +
                                (fs::path(options_.output_dir()) / "checkpoints" / "last.pt").string(),
             ". Lower the learning rate or enable gradient clipping");
      } else {
        logger()->warn("step {}: loss is {}, update skipped", st.step + 1, value);
      }
      ++st.step;
      const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      epoch_seconds += seconds;
      epoch_samples += batch_rows;
      ++epoch_steps;
      ++steps_run;
      std::map<std::string, double> terms;
      if (outcome.finite) {
        loss_sum += value;
        for (const auto& [name, v] : outcome.terms) {
          terms[name] = v;
          term_sums[name] += v;
        }
      }
      progress.update(st.epoch, options_.epochs(), st.step, value, epoch_samples / std::max(epoch_seconds, 1e-9));
      if (st.step_cb) st.step_cb(StepInfo{st.epoch, st.step, st.batch, value, lr, terms});
      if (options_.log_every() > 0 && st.step % options_.log_every() == 0) log.step(st.step, st.epoch, value, lr, terms);
      if (checkpoints && options_.checkpoint_every() > 0 && st.step % options_.checkpoint_every() == 0 &&
          st.batch + 1 < spe) {
        ++st.batch;  // the checkpoint records the position after this batch
        checkpoint_now();
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
    for (const auto& [name, sum] : term_sums) em.terms[name] = sum / static_cast<double>(std::max<int64_t>(1, epoch_steps));
    em.lr = st.current_lr;
    em.samples_per_s = epoch_seconds > 0 ? static_cast<double>(epoch_samples) / epoch_seconds : 0.0;
    if (eval) {
      em.eval = evaluate_student();
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
    if (checkpoints) {
      if (log.enabled()) log.epoch(em, eval != nullptr);
      checkpoint_now();
    }
    result.epochs.push_back(em);
    if (st.epoch_cb) st.epoch_cb(em);
  }
  result.steps = st.step;
  result.train_samples_per_s = total_seconds > 0 ? static_cast<double>(total_samples) / total_seconds : 0.0;
  if (eval && !have_eval) result.final_eval = evaluate_student();
  if (group && steps_run > 0) {
    auto& d = result.distributed;
    d.world_size = world;
    d.backend = group->backend();
    d.allreduce_bytes_per_step = reducer->bytes_per_step();
    d.allreduce_s_per_step = reducer->seconds() / static_cast<double>(steps_run);
    d.allreduce_buckets = reducer->buckets();
    d.buckets_in_backward = reducer->buckets() == 0 ? 0.0
                                                    : static_cast<double>(reducer->started_in_backward()) /
                                                          static_cast<double>(reducer->buckets() * steps_run);
    d.step_s = total_seconds / static_cast<double>(steps_run);
  }
  return result;
}

}  // namespace kdistill
