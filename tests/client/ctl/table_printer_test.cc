#include "client/ctl/table_printer.h"

#include <string>

#include "gtest/gtest.h"

namespace shmhub::ctl {
namespace {

TEST(TablePrinterTest, ColumnsAreAsWideAsTheirWidestCellAndRightAlignedWhenAsked) {
  TablePrinter table({{"PEER", TablePrinter::Align::kRight}, {"STATE"}, {"OWNER"}});
  table.AddRow({"1", "ATTACHED", "ci"});
  table.AddRow({"12", "EMPTY", "orchestrator"});

  EXPECT_EQ(table.Render(),
            "PEER  STATE     OWNER\n"
            "   1  ATTACHED  ci\n"
            "  12  EMPTY     orchestrator\n");
}

TEST(TablePrinterTest, MissingCellsAreEmptyAndExtraCellsAreDropped) {
  TablePrinter table({{"A"}, {"B"}});
  table.AddRow({"x"});
  table.AddRow({"1", "2", "3"});

  EXPECT_EQ(table.Render(),
            "A  B\n"
            "x\n"
            "1  2\n");
  EXPECT_EQ(table.row_count(), 2u);
}

TEST(TablePrinterTest, AnEmptyTableIsItsHeader) {
  EXPECT_EQ(TablePrinter({{"PEER"}, {"STATE"}}).Render(), "PEER  STATE\n");
}

TEST(RenderKeyValuesTest, KeysArePaddedToTheLongest) {
  EXPECT_EQ(RenderKeyValues({{"segment", "/dev/shm/shmhub"}, {"max guests", "64"}, {"owner", ""}}),
            "segment     /dev/shm/shmhub\n"
            "max guests  64\n"
            "owner\n");
}

}  // namespace
}  // namespace shmhub::ctl
