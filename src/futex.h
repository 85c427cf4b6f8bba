/* SPDX-License-Identifier: MIT */
/* Thin wrappers around futex(2) on 32-bit atomics (process-private). */
#ifndef VCPUREQ_FUTEX_H
#define VCPUREQ_FUTEX_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleep while *word == val.  Returns 0 or -1 (EAGAIN: changed, EINTR). */
static inline long vcpureq__futex_wait(_Atomic uint32_t *word, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val,
		       NULL, NULL, 0);
}

/* The same, for at most @rel (relative, CLOCK_MONOTONIC): -1 ETIMEDOUT. */
static inline long vcpureq__futex_wait_rel(_Atomic uint32_t *word, uint32_t val,
					   const struct timespec *rel)
{
	return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val,
		       rel, NULL, 0);
}

static inline long vcpureq__futex_wake(_Atomic uint32_t *word, int nr)
{
	return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, nr,
		       NULL, NULL, 0);
}

#endif /* VCPUREQ_FUTEX_H */
