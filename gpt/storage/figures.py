"""Figures as files: matplotlib loaded on first use, drawing off-screen, and a PNG written atomically."""
import io

from gpt.storage.atomic import write_atomic


def pyplot():
    """matplotlib.pyplot drawing off-screen (imported here, on first use: training without plots never pays it)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path, dpi=100):
    """Write `fig` to `path` as a PNG, atomically (a crash never leaves half a picture), and close it."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi)
    pyplot().close(fig)
    try:
        write_atomic(path, png.getvalue())
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from e
