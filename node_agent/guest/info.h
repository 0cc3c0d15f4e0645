/* info.h — the HELLO reply (agent identity) and the INFO_OK health reply. */
#ifndef CORRAL_INFO_H
#define CORRAL_INFO_H

#include <stdint.h>

void info_hello(uint32_t id);
void info_reply(uint32_t id);

#endif
