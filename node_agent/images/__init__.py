"""OCI images: pulled from registries, stored by digest, unpacked into root trees.

    reference     parse `registry/repository:tag@digest` (pure)
    manifest      validate manifests, indexes and image configs (pure)
    settings      per-registry TLS / insecure settings and credentials, read from files
    distribution  the OCI distribution client (aiohttp): manifests, blobs, auth
    blobs         the content-addressed blob store; nothing unverified is ever visible
    unpack        apply layers to a tree without anything escaping its root
    store         local image records (reference → manifest digest) and image trees
    pull          pull(reference, policy): the registry side of the store
    archive       load(path): OCI layouts and OCI / Docker archives into the store
    worker        the helper process the SDK runs for a pull or a load

Only `pull` and `distribution` import aiohttp, so a sandbox whose image is already
local boots without loading it. `rootfs` imports this package, never the reverse.
"""
