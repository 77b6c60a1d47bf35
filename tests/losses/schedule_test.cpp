#include "kdistill/losses/schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "kdistill/core/error.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

TrainProgress at_step(int64_t step, int64_t total = 100, int64_t per_epoch = 10) {
  return TrainProgress{step, step / per_epoch, total, per_epoch};
}

}  // namespace

TEST(Schedule, ValuesFollowTheFormulas) {
  Schedule constant = 4.0;
  EXPECT_EQ(constant.at(at_step(57)), 4.0);
  EXPECT_TRUE(constant.is_constant());
  Schedule linear(ScheduleOptions().kind("linear").start(0).end(1));  // over the whole run
  EXPECT_EQ(linear.at(at_step(0)), 0.0);
  EXPECT_DOUBLE_EQ(linear.at(at_step(25)), 0.25);
  Schedule warmup(ScheduleOptions().kind("linear").start(0).end(1).span_epochs(2));  // 20 steps, then held
  EXPECT_DOUBLE_EQ(warmup.at(at_step(5)), 0.25);
  EXPECT_EQ(warmup.at(at_step(20)), 1.0);
  EXPECT_EQ(warmup.at(at_step(90)), 1.0);
  Schedule by_steps(ScheduleOptions().kind("linear").start(2).end(4).span_steps(40).span_epochs(1));  // steps win
  EXPECT_DOUBLE_EQ(by_steps.at(at_step(10)), 2.5);
  Schedule cosine(ScheduleOptions().kind("cosine").start(8).end(2));
  EXPECT_EQ(cosine.at(at_step(0)), 8.0);
  EXPECT_NEAR(cosine.at(at_step(50)), 5.0, 1e-12);
  EXPECT_NEAR(cosine.at(at_step(25)), 2 + 6 * (1 + std::cos(M_PI / 4)) / 2, 1e-12);
  Schedule step(ScheduleOptions().kind("step").start(1).gamma(0.5).step_size(30));
  EXPECT_EQ(step.at(at_step(29)), 1.0);
  EXPECT_EQ(step.at(at_step(30)), 0.5);
  EXPECT_EQ(step.at(at_step(95)), 0.125);
  EXPECT_TRUE(cosine.positive());
  EXPECT_FALSE(warmup.positive());
  EXPECT_TRUE(warmup.non_negative());
  EXPECT_EQ(warmup.describe(), "linear(0 -> 1 over 2 epochs)");
  EXPECT_EQ(constant.describe(), "4");
}

TEST(Schedule, BadOptionsThrow) {
  EXPECT_THAT(error_of([] { Schedule s(ScheduleOptions().kind("exponential")); }),
              HasSubstr("kind must be constant, linear, cosine or step"));
  EXPECT_THAT(error_of([] { Schedule s(ScheduleOptions().kind("step")); }),
              HasSubstr("a step schedule needs step_size > 0, got 0"));
  EXPECT_THAT(error_of([] { Schedule s(ScheduleOptions().kind("linear").end(NAN)); }),
              HasSubstr("must be finite"));
  EXPECT_THAT(error_of([] { Schedule s(ScheduleOptions().kind("linear").span_steps(-1)); }),
              HasSubstr("span_steps and span_epochs must be >= 0"));
  EXPECT_THROW({ Schedule s(INFINITY); }, Error);
  Schedule by_epochs(ScheduleOptions().kind("linear").start(0).end(1).span_epochs(2));
  EXPECT_THROW(by_epochs.at(TrainProgress{5, 0, 100, 0}), Error);  // no steps per epoch: no silent other span
}

}  // namespace kdistill::test
