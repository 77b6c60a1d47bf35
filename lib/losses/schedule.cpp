#include "kdistill/losses/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "kdistill/core/error.h"

namespace kdistill {

Schedule::Schedule(double value) : options_(ScheduleOptions().start(value).end(value)) {
  check(std::isfinite(value), "Schedule: a value must be finite, got ", value);
}

Schedule::Schedule(ScheduleOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  check(o.kind() == "constant" || o.kind() == "linear" || o.kind() == "cosine" || o.kind() == "step",
        "Schedule: kind must be constant, linear, cosine or step, got \"", o.kind(), "\"");
  check(std::isfinite(o.start()) && std::isfinite(o.end()) && std::isfinite(o.gamma()),
        "Schedule: start, end and gamma must be finite, got ", o.start(), ", ", o.end(), " and ", o.gamma());
  check(o.span_steps() >= 0 && o.span_epochs() >= 0 && std::isfinite(o.span_epochs()),
        "Schedule: span_steps and span_epochs must be >= 0, got ", o.span_steps(), " and ", o.span_epochs());
  if (o.kind() == "constant") options_.end(o.start());
  if (o.kind() == "step") {
    check(o.step_size() > 0, "Schedule: a step schedule needs step_size > 0, got ", o.step_size());
  }
}

double Schedule::at(const TrainProgress& p) const {
  const auto& o = options_;
  if (o.kind() == "constant") return o.start();
  const double s = static_cast<double>(p.step);
  if (o.kind() == "step") return o.start() * std::pow(o.gamma(), std::floor(s / static_cast<double>(o.step_size())));
  double span = static_cast<double>(p.total_steps);
  if (o.span_steps() > 0) span = static_cast<double>(o.span_steps());
  else if (o.span_epochs() > 0) {
    check(p.steps_per_epoch > 0, "Schedule: a span in epochs needs TrainProgress::steps_per_epoch, got ",
          p.steps_per_epoch, " (the trainer sets it; set it when calling at() yourself)");
    span = o.span_epochs() * static_cast<double>(p.steps_per_epoch);
  }
  const double f = span > 0 ? std::min(s / span, 1.0) : 0.0;
  if (o.kind() == "linear") return o.start() + (o.end() - o.start()) * f;
  return o.end() + (o.start() - o.end()) * (1.0 + std::cos(M_PI * f)) / 2.0;
}

bool Schedule::positive() const {
  const auto& o = options_;
  if (o.kind() == "step") return o.start() > 0 && o.gamma() > 0;
  return o.start() > 0 && o.end() > 0;
}

bool Schedule::non_negative() const {
  const auto& o = options_;
  if (o.kind() == "step") return o.start() >= 0 && o.gamma() >= 0;
  return o.start() >= 0 && o.end() >= 0;
}

std::string Schedule::describe() const {
  const auto& o = options_;
  std::ostringstream s;
  if (o.kind() == "constant") {
    s << o.start();
  } else if (o.kind() == "step") {
    s << "step(" << o.start() << " x " << o.gamma() << " every " << o.step_size() << " steps)";
  } else {
    s << o.kind() << "(" << o.start() << " -> " << o.end() << " over ";
    if (o.span_steps() > 0) s << o.span_steps() << " steps)";
    else if (o.span_epochs() > 0) s << o.span_epochs() << " epochs)";
    else s << "the run)";
  }
  return s.str();
}

}  // namespace kdistill
