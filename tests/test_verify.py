import sys

def test_x() -> None:
    print(sys.path[:5])
