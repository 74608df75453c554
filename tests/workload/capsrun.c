// SPDX-License-Identifier: Apache-2.0
/* Runs a command as user and group 65534 (nobody) with exactly CAP_BPF and CAP_PERFMON
 * (permitted, effective, inheritable and ambient, so the command keeps them across exec),
 * as `setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+bpf,+perfmon
 * --ambient-caps=+bpf,+perfmon` does; for the VM guests, whose busybox has no setpriv.
 * Built static.
 *
 *   capsrun CMD ARGS...
 */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

int main(int argc, char **argv)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	const int caps[] = { CAP_PERFMON, CAP_BPF };

	if (argc < 2) {
		fprintf(stderr, "usage: capsrun CMD ARGS...\n");
		return 2;
	}
	/* Keep the permitted set across the change of user; the effective one is cleared. */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || setgroups(0, NULL) ||
	    setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
		perror("capsrun: becoming nobody");
		return 1;
	}
	memset(data, 0, sizeof(data));
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		int c = caps[i];

		data[c / 32].permitted |= 1u << (c % 32);
		data[c / 32].effective |= 1u << (c % 32);
		data[c / 32].inheritable |= 1u << (c % 32);
	}
	if (syscall(SYS_capset, &hdr, data)) {
		perror("capsrun: capset");
		return 1;
	}
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, caps[i], 0, 0)) {
			perror("capsrun: raising an ambient capability");
			return 1;
		}
	}
	execv(argv[1], argv + 1);
	perror("capsrun: exec");
	return 127;
}
