"""Write progcodec/data/gaussian-tables.npz: the coder's integer Gaussian tables, so a fresh
process need not compute them with mpmath (tests/test_entropy.py checks the file)."""
from progcodec import entropy

if __name__ == "__main__":
    entropy.write_tables()
    print(f"wrote {entropy.TABLES}")
