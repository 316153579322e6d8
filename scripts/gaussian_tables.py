"""Write progcodec/data/gaussian-tables.npz and gaussian-mean-tables.npz: the coder's integer
Gaussian tables (zero-mean; means at fractions 1/8 .. 4/8), so a fresh process need not compute
them with mpmath (tests/test_entropy.py checks the files)."""
from progcodec import entropy

if __name__ == "__main__":
    for path in (entropy.TABLES, entropy.MEAN_TABLES):
        entropy.write_tables(path)
        print(f"wrote {path}")
