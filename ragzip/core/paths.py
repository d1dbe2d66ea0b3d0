"""Where ragzip reads its data and writes caches, reports and trained weights: one settings
object, read from the environment (``RAGZIP_DATA_DIR``, ``RAGZIP_CACHE_DIR``,
``RAGZIP_REPORTS_DIR``) each time it is asked for, with defaults that never point into the
source tree."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Paths(BaseSettings):
    """The folders ragzip uses.

    Attributes:
        data_dir: The evaluation and training data (NQ-open and key-value files); default
            ``../shared/data`` from the working directory.
        cache_dir: Caches (converted models, evaluation indexes, teacher outputs, profiles) and
            trained weights not given another place; default the user cache folder.
        reports_dir: Reports of evaluation and comparison runs; default ``reports``.
    """

    model_config = SettingsConfigDict(env_prefix="RAGZIP_", extra="ignore")

    data_dir: Path = Path("..") / "shared" / "data"
    cache_dir: Path | None = None
    reports_dir: Path = Path("reports")

    @property
    def data(self) -> Path:
        """The data folder, absolute."""
        return self.data_dir.expanduser().absolute()

    @property
    def cache(self) -> Path:
        """The cache folder, absolute."""
        if self.cache_dir is not None:
            return self.cache_dir.expanduser().absolute()
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("ragzip"))

    @property
    def index_cache(self) -> Path:
        """Indexes built for evaluation and training, reused while their corpus matches."""
        return self.cache / "indexes"

    def trained(self, name: str) -> Path:
        """Default output folder of ``python -m ragzip.training.<name>``."""
        return self.cache / "trained" / name

    def report(self, *parts: str) -> Path:
        """A path under the reports folder."""
        return self.reports_dir.joinpath(*parts)


def paths() -> Paths:
    """The folders as the environment sets them now."""
    return Paths()
