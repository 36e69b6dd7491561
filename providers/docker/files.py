"""Model files from a Bundle: where they come from, and materializing them for a bind mount."""

from __future__ import annotations

from providers.context import Context
from providers.docker.model import BundleSource, Failed, OnePerKey
from specs.errors import ReconError
from specs.model import ModelSpec
from specs.project import Project


def bundle_source(body: ModelSpec, project: Project) -> BundleSource:
    """Where the model files come from: a Bundle spec of the project (tree known from its files), or a ref."""
    from providers.oras import bundle as oci
    from providers.oras.provider import BundleProvider
    from specs.ref import parse

    mount = body.bundle
    assert mount is not None
    if mount.spec is not None:
        [inst] = BundleProvider().expand(project.specs[f"Bundle/{mount.spec}"], project)
        b = inst.desired
        return BundleSource(b.ref, oci.tree_digest(b.entries), mount.mountPath, b.credentials())
    return BundleSource(parse(mount.ref or ""), "", mount.mountPath)


def bundle_tree(source: BundleSource, ctx: Context) -> str | None:
    """The tree digest of the files the bundle's tag points to now (one HEAD; the manifest is cached)."""
    from providers.oras import bundle as oci
    from providers.oras import ops
    from providers.oras.cache import BlobCache

    remote = ops.read(ops.store_for(source.ref, source.credentials), BlobCache())
    return None if remote is None else remote.parsed.annotations.get(oci.TREE)


_PULLING = OnePerKey()


def materialize(source: BundleSource, ctx: Context) -> tuple[str, str]:
    """Pull the bundle into the cache's models/ folder (hard links, verified): (tree digest, bind mount)."""
    from providers.oras import bundle as oci
    from providers.oras import ops
    from providers.oras.cache import BlobCache
    from providers.oras.scan import cache_dir

    store = ops.store_for(source.ref, source.credentials)
    cache = BlobCache()
    remote = ops.read(store, cache)
    if remote is None:
        raise Failed(f"bundle {source.ref} does not exist; push it first (a Bundle spec is pushed before the "
                      "Models that use it)")
    tree = remote.parsed.annotations.get(oci.TREE, "")
    if source.tree and tree != source.tree:
        raise Failed(f"bundle {source.ref} holds other files than its spec says (tree {tree[:19]}, expected "
                      f"{source.tree[:19]}); apply the Bundle first")
    where = cache_dir() / "models" / (tree or remote.digest).partition(":")[2][:20]
    try:
        with _PULLING(str(where)):  # Models rolling at the same time that share a bundle materialize it once
            ops.pull(store, where, cache, lambda total: None, remote)
    except ReconError as exc:
        raise Failed(f"bundle {source.ref} could not be materialized: {exc}") from None
    return tree, f"{where}:{source.mount}:ro"
