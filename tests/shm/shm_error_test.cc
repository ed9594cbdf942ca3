#include "shm/shm_error.h"

#include "gtest/gtest.h"

namespace shmhub::shm {
namespace {

TEST(ShmError, CarriesItsErrcAndAFittingCanonicalCode) {
  absl::Status full = ShmError(ShmErrc::kRingFull, "ring full");
  EXPECT_EQ(ShmErrcOf(full), ShmErrc::kRingFull);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(full.message(), "ring full");

  absl::Status corrupt = ShmError(ShmErrc::kRingCorrupt, "write 40 > capacity 32");
  EXPECT_EQ(ShmErrcOf(corrupt), ShmErrc::kRingCorrupt);
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kDataLoss);
}

TEST(ShmError, OkAndForeignStatusesHaveNoErrc) {
  EXPECT_EQ(ShmErrcOf(absl::OkStatus()), ShmErrc::kNone);
  EXPECT_EQ(ShmErrcOf(absl::InternalError("x")), ShmErrc::kNone);
}

TEST(ShmError, NamesAreTheEnumeratorNames) {
  EXPECT_EQ(ShmErrcName(ShmErrc::kDoubleFree), "kDoubleFree");
  EXPECT_EQ(ShmErrcName(ShmErrc::kLiveSegment), "kLiveSegment");
}

TEST(ShmError, IoErrorNamesTheCallAndErrno) {
  absl::Status s = ShmIoError("open(/x)", ENOENT);
  EXPECT_EQ(ShmErrcOf(s), ShmErrc::kIo);
  EXPECT_NE(s.message().find("open(/x): No such file"), absl::string_view::npos);
}

}  // namespace
}  // namespace shmhub::shm
