/* SPDX-License-Identifier: MIT */
/*
 * Force-included (-include) into every library source, which is compiled
 * with -fvisibility=hidden (cmake/library.cmake): the public header's
 * declarations get default visibility, everything declared after it (the
 * vcpureq__ internals) stays hidden, also inside libvcpureq.a linked into
 * someone else's shared library.  The version script (src/vcpureq.map)
 * says the same for libvcpureq.so.
 */
#pragma GCC visibility push(default)
#include "vcpureq/vcpureq.h"
#pragma GCC visibility pop
