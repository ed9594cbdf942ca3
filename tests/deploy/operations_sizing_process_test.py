"""docs/operations.md's segment sizes are the sizes shmhubd creates: for each
row of the "Segment size" table, the real daemon is started with the row's
flags (segment in a temporary directory, no socket, no metrics, a free
port) and the segment file's size must be the row's bytes, and the MiB
column that size rounded to one decimal. The worked example's total must be
the defaults row."""

import ast
import operator
import os
import re
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import deploy_files  # noqa: E402
from shmhub_processes import Daemon  # noqa: E402

OPERATIONS = os.path.join(deploy_files.ROOT, "docs", "operations.md")
DEFAULTS = "*(defaults)*"


def size_table():
    """[(flags cell, bytes, MiB)] of the table under "### Segment size"."""
    section = re.search(r"^### Segment size\n(.*?)(?=^#)", deploy_files.read(OPERATIONS),
                        re.MULTILINE | re.DOTALL).group(1)
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"[0-9,]+", cells[1]):
            continue
        rows.append((cells[0], int(cells[1].replace(",", "")), cells[2]))
    return rows


_OPERATORS = {ast.Add: operator.add, ast.Mult: operator.mul}


def arithmetic(expression):
    """The value of an expression of integers, + and * (nothing else)."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not integer + and *: " + ast.dump(node))
    return value(ast.parse(expression, mode="eval").body)


class OperationsSizingProcessTest(unittest.TestCase):
    def test_table_has_the_defaults_and_the_shipped_geometries(self):
        flags = [row[0] for row in size_table()]
        self.assertIn(DEFAULTS, flags)
        self.assertGreaterEqual(len(flags), 4)

    def test_each_rows_size_is_the_size_shmhubd_creates(self):
        rows = size_table()
        self.assertTrue(rows)
        for cell, expected, mib in rows:
            with self.subTest(flags=cell), tempfile.TemporaryDirectory() as tmp:
                args = [] if cell == DEFAULTS else cell.strip("`").split()
                daemon = Daemon(args + ["--segment=%s/segment" % tmp, "--socket=",
                                        "--metrics_listen=", "--listen=127.0.0.1:0"],
                                os.path.join(tmp, "shmhubd.err"))
                try:
                    self.assertEqual(os.stat(daemon.segment).st_size, expected)
                finally:
                    self.assertEqual(daemon.stop(signal.SIGTERM), 0, daemon.transcript())
                self.assertEqual(mib, "%.1f" % (expected / (1 << 20)))

    def test_worked_example_adds_up_to_the_defaults_row(self):
        text = deploy_files.read(OPERATIONS)
        example = re.search(r"^The defaults .*?(?=^\n)", text, re.MULTILINE | re.DOTALL).group(0)
        terms = re.search(r"give\s+(.*?)\s+=\s+([0-9,]+) bytes", example, re.DOTALL)
        expression = terms.group(1).replace(",", "").replace("\n", " ")
        total = int(terms.group(2).replace(",", ""))
        self.assertEqual(arithmetic(expression), total)
        self.assertIn((DEFAULTS, total), [(row[0], row[1]) for row in size_table()])


if __name__ == "__main__":
    unittest.main()
