"""The Corral runtime (imported as `corral.node_agent`).

    supervisor → {vmm, accel, channel router, rootfs, assets}

The supervisor owns one sandbox's VM; the resource modules do not import each other.
"""
