"""The public surface: `gemini_sse.__all__` and `gemini_sse.client.__all__` are exact."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

import gemini_sse
import gemini_sse.client


@pytest.mark.parametrize("module", [gemini_sse, gemini_sse.client], ids=lambda m: m.__name__)
def test_all_is_sorted_and_names_every_public_member(module: types.ModuleType) -> None:
    """`__all__` is sorted, every name exists, and every public name is in it."""
    public = {
        name
        for name, value in vars(module).items()
        # Submodules (`client`, `server`) appear as attributes once imported; they are
        # reached by their dotted names, not re-exported.
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
    }
    assert module.__all__ == sorted(module.__all__)
    assert set(module.__all__) == public
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_client_module_re_exports_the_same_objects() -> None:
    """`gemini_sse.client` names the same classes as the package, not copies."""
    for name in gemini_sse.client.__all__:
        if hasattr(gemini_sse, name):
            assert getattr(gemini_sse.client, name) is getattr(gemini_sse, name)


def test_version_matches_the_installed_distribution() -> None:
    """`__version__` is the version pip installed."""
    assert gemini_sse.__version__ == importlib.metadata.version("gemini-sse")


def test_the_package_and_gemini_sse_client_offer_one_surface() -> None:
    """`gemini_sse` and `gemini_sse.client` export the same names."""
    import gemini_sse
    import gemini_sse.client

    assert gemini_sse.__all__ == gemini_sse.client.__all__
