/* channel.h — the byte pipe to the host: opening it (the corral.0 virtio-serial port, or
 * the --channel path in test mode), cutting its input into frames, blocking writes. */
#ifndef CORRAL_CHANNEL_H
#define CORRAL_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "frame.h"

enum chan_event {
	CH_NONE,
	CH_OPENED,  /* the channel was (re)opened */
	CH_EOF,     /* the host went away (read EOF or a failed write) */
	CH_CORRUPT, /* an impossible frame header: the channel was dropped for a reopen */
};

/* path: the --channel argument, or NULL for the corral.0 virtio port. Opens it at once
 * when it can (PID 1 calls this before the root switch, so the host's HELLO travels while
 * the disks are mounted); CH_OPENED is reported by the first chan_service. */
void chan_configure(const char *path);
void chan_poll_add(struct pollset *ps);
/* When the channel next needs the loop to wake up (ms), or -1. */
int64_t chan_deadline(void);
/* Opens, probes or reads the channel; every complete frame goes to on_frame. When
 * on_frame returns -1 the frame stays at the head of the input, which is not read
 * further: each later chan_service offers it again. place, asked about a frame whose
 * header has come and payload has not, may name where that payload is to be read: room
 * for all of it, which must stay valid until the frame is handed over while place keeps
 * giving the same answer (a different one drops the frame: its stream has gone). */
enum chan_event chan_service(const struct pollset *ps, int (*on_frame)(const struct frame *),
			     unsigned char *(*place)(const struct frame *));

/* Writes one whole frame, blocking until done; -1 when the channel is gone. */
int chan_send(const unsigned char *p, size_t n);
/* A buffer for one data frame: the payload goes at FRAME_HDR, up to DATA_MAX_PAYLOAD. */
unsigned char *chan_data_buf(void);
/* Sends the data frame held in chan_data_buf() with n payload bytes. */
int chan_send_data(uint32_t stream, uint8_t type, uint8_t flags, size_t n);

#endif
