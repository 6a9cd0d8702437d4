"""``python -m genrecall``: the command line (torchrun relaunches `--nproc` stages this way)."""

from genrecall.cli import app

if __name__ == "__main__":
    app()
