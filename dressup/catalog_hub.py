"""Fetching a catalogue that lives in a Hugging Face Hub dataset repo (DeepFashion's layout) into the local cache.

Apart from ``dressup.catalog`` because it is about where a catalogue's files come from (the network, the
Hugging Face cache, tokens), not how they read; ``dressup.config`` resolves a study's ``[catalogue] hub`` with it.
"""
from __future__ import annotations

from pathlib import Path

from dressup.catalog_files import CatalogError


def catalogue_from_hub(repo: str, revision: str = "") -> Path:
    """The snapshot folder of Hub dataset ``repo`` (DeepFashion's layout) in the Hugging Face cache.

    The cache rather than a folder of our own, because it is where ``hf download`` and a Space's
    ``preload_from_hub`` put files, and huggingface_hub itself reads it alone when HF_HUB_OFFLINE=1; online, a
    cached snapshot costs one look-up of the repo's current commit. A private repo reads HF_TOKEN (or the saved
    login) as the library always does. DeepFashion's agreement forbids redistribution: keep such a repo private.
    """
    # Imported here, not at the top: reading a local catalogue must not pay for the Hub client.
    import httpx2
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    at = f" --revision {revision}" if revision else ""
    fix = (f"download it with `hf download {repo} --repo-type dataset{at}` (a private repo needs HF_TOKEN or "
           "`hf auth login`)")
    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision or None))
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise CatalogError(f"dataset {repo} is not (wholly) in the Hugging Face cache {constants.HF_HUB_CACHE} and "
                           f"{why}; {fix}") from None
    except (httpx2.HTTPError, OSError, ValueError) as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, RepositoryNotFoundError) or status in (401, 403):
            raise CatalogError(f"the Hub will not let this machine read dataset {repo} ({_first_line(e)}); check the "
                               "name, and for a private repo set HF_TOKEN to a token that can read it (or run "
                               "`hf auth login`)") from None
        raise CatalogError(f"could not fetch dataset {repo} ({_first_line(e)}); {fix}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
