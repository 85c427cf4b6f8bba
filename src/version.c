/* SPDX-License-Identifier: MIT */
/* The version of the library actually linked (vcpureq/version.h is the one
 * compiled against). */
#include "vcpureq/vcpureq.h"

unsigned int vcpureq_version(void)
{
	return VCPUREQ_VERSION;
}

const char *vcpureq_version_string(void)
{
	return VCPUREQ_VERSION_STRING;
}
