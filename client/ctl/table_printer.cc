#include "client/ctl/table_printer.h"

#include <algorithm>
#include <utility>

namespace shmhub::ctl {
namespace {

void RenderLine(const std::vector<TablePrinter::Column>& columns,
                const std::vector<size_t>& widths, const std::vector<std::string>& cells,
                std::string& out) {
  std::string line;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) line += "  ";
    const std::string& cell = cells[i];
    const std::string pad(widths[i] - cell.size(), ' ');
    if (columns[i].align == TablePrinter::Align::kRight) {
      line += pad + cell;
    } else {
      line += cell + pad;
    }
  }
  line.erase(line.find_last_not_of(' ') + 1);
  out += line;
  out += '\n';
}

}  // namespace

TablePrinter::TablePrinter(std::vector<Column> columns) : columns_(std::move(columns)) {}

void TablePrinter::AddRow(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

std::string TablePrinter::Render() const {
  std::vector<std::string> headers;
  std::vector<size_t> widths;
  for (const Column& column : columns_) {
    headers.push_back(column.header);
    widths.push_back(column.header.size());
  }
  for (const std::vector<std::string>& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  RenderLine(columns_, widths, headers, out);
  for (const std::vector<std::string>& row : rows_) RenderLine(columns_, widths, row, out);
  return out;
}

std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& pairs) {
  size_t width = 0;
  for (const auto& [key, value] : pairs) width = std::max(width, key.size());
  std::string out;
  for (const auto& [key, value] : pairs) {
    std::string line = key + std::string(width - key.size() + 2, ' ') + value;
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace shmhub::ctl
