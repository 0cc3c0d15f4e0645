/* modules.h — loading the kernel modules a stock (modular) guest kernel needs. */
#ifndef CORRAL_MODULES_H
#define CORRAL_MODULES_H

/* Loads every module the initramfs lists in /lib/modules/load, in order; without the
 * list (the project's own kernel has everything built in) it does nothing. A module
 * that does not load ends the boot with a console line naming it. Needs /proc. */
void modules_load(void);

#endif
