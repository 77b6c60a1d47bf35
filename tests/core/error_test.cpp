// Tests for kdistill/core/error.h: fail(), check() and the Error type.

#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kdistill/core/error.h"
#include "support.h"

namespace {

using kdistill::test::error_of;

static_assert(std::is_base_of_v<std::runtime_error, kdistill::Error>, "Error must be a std::runtime_error");

TEST(Error, FailConcatenatesStreamedArguments) {
  EXPECT_EQ(error_of([] { kdistill::fail("x=", 3, " y=", 1.5); }), "x=3 y=1.5");
}

TEST(Error, FailStreamsLikeAnOstream) {
  // The expected text is built independently with an ostringstream.
  std::ostringstream expected;
  const std::string name = "temperature";
  expected << "kd_loss: " << name << " must be > 0, got " << -1 << " (" << 2.25 << ", " << 'c' << ")";
  EXPECT_EQ(error_of([&] { kdistill::fail("kd_loss: ", name, " must be > 0, got ", -1, " (", 2.25, ", ", 'c', ")"); }),
            expected.str());
}

TEST(Error, CheckTrueDoesNotThrow) {
  EXPECT_NO_THROW(kdistill::check(true, "never ", 1));
  EXPECT_NO_THROW(kdistill::check(1 + 1 == 2, "arithmetic"));
}

TEST(Error, CheckFalseThrowsWithMessage) {
  EXPECT_EQ(error_of([] { kdistill::check(2 < 1, "value ", 7, " is out of range [", 0, ", ", 5, ")"); }),
            "value 7 is out of range [0, 5)");
}

TEST(Error, ErrorIsCatchableAsRuntimeError) {
  bool caught = false;
  try {
    kdistill::fail("boom ", 42);
  } catch (const std::runtime_error& e) {
    caught = true;
    EXPECT_EQ(std::string(e.what()), "boom 42");
  }
  EXPECT_TRUE(caught);
  EXPECT_THROW(kdistill::check(false, "x"), std::runtime_error);
  EXPECT_THROW(kdistill::check(false, "x"), kdistill::Error);
}

TEST(Error, DetailConcatJoinsWithoutSeparators) {
  EXPECT_EQ(kdistill::detail::concat("a", 1, "b", 2u, std::string("c")), "a1b2c");
  EXPECT_EQ(kdistill::detail::concat(std::string()), "");
}

}  // namespace
