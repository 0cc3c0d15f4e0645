/* init.h — PID 1 duties: early console, mounts and the overlay root switch, loopback and
 * the orderly power-off (the hostname comes with each handshake: identity.c). Only used
 * when the agent runs as PID 1. */
#ifndef CORRAL_INIT_H
#define CORRAL_INIT_H

/* Mounts devtmpfs, points stdio at /dev/console, prints "corral-agent: init", mounts
 * /proc and /sys, loads the listed kernel modules (what finding the channel's port and
 * mounting the disks need). */
void init_early(void);
/* The root switch (corral.root/corral.upper, or corral.root=9p:TAG for a host directory),
 * the other mounts, loopback. */
void init_system(void);
/* SHUTDOWN: terminate every process, sync, make the filesystems read-only, power off. */
_Noreturn void init_shutdown(void);
/* Syncs and ends the VM (reboot=t and -no-reboot make a reboot end QEMU). */
_Noreturn void init_poweroff(void);

#endif
