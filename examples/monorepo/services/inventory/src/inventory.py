"""The inventory service: totals the stock of each category in a CSV of items.

Only the modules of Python's minimal standard library (Debian's libpython3.11-minimal): the
base image holds no more.
"""

import argparse
import collections
import csv
import sys


def totals(rows):
    """Quantity per category, sorted by category."""
    by_category = collections.Counter()
    for row in rows:
        by_category[row["category"]] += int(row["quantity"])
    return sorted(by_category.items())


def report(path, out):
    with open(path, newline="", encoding="utf-8") as f:
        for category, quantity in totals(csv.DictReader(f)):
            print(f"{category}\t{quantity}", file=out)


def self_test():
    rows = [
        {"category": "tools", "quantity": "2"},
        {"category": "food", "quantity": "5"},
        {"category": "tools", "quantity": "3"},
    ]
    assert totals(rows) == [("food", 5), ("tools", 5)], totals(rows)
    print("inventory: self-test passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="?", help="a CSV file with category and quantity columns")
    parser.add_argument("--self-test", action="store_true", help="check the totals and exit")
    args = parser.parse_args()
    if args.self_test:
        self_test()
    elif args.items:
        report(args.items, sys.stdout)
    else:
        parser.error("give a CSV file of items, or --self-test")


if __name__ == "__main__":
    main()
