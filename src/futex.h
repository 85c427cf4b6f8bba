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

/* Sleep while *word == val, until @abs (absolute CLOCK_MONOTONIC; NULL:
 * no limit): -1 ETIMEDOUT past it. */
static inline long vcpureq__futex_wait_until(_Atomic uint32_t *word,
					     uint32_t val,
					     const struct timespec *abs)
{
	return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET_PRIVATE,
		       val, abs, NULL, FUTEX_BITSET_MATCH_ANY);
}

/* The earlier of @a and @b (either may be NULL: no limit). */
static inline const struct timespec *
vcpureq__ts_min(const struct timespec *a, const struct timespec *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return (a->tv_sec < b->tv_sec ||
		(a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec)) ? a : b;
}

static inline struct timespec vcpureq__ts_after(long ns)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_nsec += ns;
	while (t.tv_nsec >= 1000000000l) {
		t.tv_nsec -= 1000000000l;
		t.tv_sec++;
	}
	return t;
}

static inline long vcpureq__futex_wake(_Atomic uint32_t *word, int nr)
{
	return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, nr,
		       NULL, NULL, 0);
}

#endif /* VCPUREQ_FUTEX_H */
