"""The installed version. Its own module: importlib.metadata loads email and socket, which no
pure module may pull in by importing the `exporter` package."""

from importlib.metadata import PackageNotFoundError, version

# The version is set once, in pyproject.toml; the installed package's metadata carries it.
try:
    __version__ = version("prime-tofu-exporter")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
