#!/usr/bin/perl
# SPDX-License-Identifier: MIT
#
# Man pages (section 3) from the public header's comments.
#
#   tools/mkman.pl HEADER OUTDIR [VERSION]
#
# Writes OUTDIR/man3/NAME.3 for every public function, and vcpureq.3 (the
# overview: the header's opening comment, its constants and types).
#
# What documents a function: the comment block /* ... */ that immediately
# precedes its declaration (no blank line between them).  Declarations that
# follow one another without a blank line or another comment share the
# comment above the first: the first name gets the page, the others a .so
# link to it.  Struct and enum definitions named in a prototype (by
# "struct vcpureq_x" / "enum vcpureq_x") are shown in the page with their
# comments (for a definition, also a comment a blank line above it).  A function without such a comment gets no page: the generator
# names it on stderr (and still exits 0, so that a header being rewritten
# does not break the build); tools/check-man.sh, a CTest test, fails then.
use strict;
use warnings;

my ($header, $outdir, $version) = @ARGV;
die "usage: $0 HEADER OUTDIR [VERSION]\n" unless defined $outdir;
$version //= '';

open(my $fh, '<', $header) or die "$0: $header: $!\n";
my $src = do { local $/; <$fh> };
close $fh;

# ---- split the header into items at file scope ---------------------------
# Each item: { kind => comment|decl|pp|blank, text => ..., }
# Braces are tracked so a struct or enum body (with its own comments) stays
# one declaration.
my @items;
{
	my $s = $src;
	my $pos = 0;
	my $len = length $s;
	while ($pos < $len) {
		my $rest = substr($s, $pos);
		if ($rest =~ /^\/\*.*?\*\//s) {
			push @items, { kind => 'comment', text => $& };
			$pos += length $&;
		} elsif ($rest =~ /^[ \t]*\n([ \t]*\n)+/) {
			push @items, { kind => 'blank' };
			$pos += length $&;
		} elsif ($rest =~ /^\s+/) {
			$pos += length $&;
		} elsif ($rest =~ /^#(?:[^\n]*\\\n)*[^\n]*/) {
			push @items, { kind => 'pp', text => $& };
			$pos += length $&;
		} else {
			# a declaration: up to the ';' at brace depth 0 (comments
			# inside it kept, a stray '}' such as extern "C"'s ends it)
			my ($depth, $i, $start, $open) = (0, $pos, $pos, -1);
			while ($i < $len) {
				my $c = substr($s, $i, 1);
				if (substr($s, $i, 2) eq '/*') {
					my $e = index($s, '*/', $i + 2);
					$i = $e < 0 ? $len : $e + 2;
					next;
				}
				if ($c eq '{') {
					$open = $i if $depth == 0;
					$depth++;
					# extern "C" { opens no declaration
					if (substr($s, $start, $i - $start) =~ /^extern\s+"C"\s*$/) {
						$depth--;
						$start = $i + 1;
						push @items, { kind => 'pp', text => 'extern "C" {' };
						$i++;
						last;
					}
				} elsif ($c eq '}') {
					if ($depth == 0) { $i++; last; }
					$depth--;
					# the body of an inline function ends it
					if ($depth == 0 &&
					    substr($s, $start, $open - $start) =~ /\)\s*$/) {
						$i++;
						last;
					}
				} elsif ($c eq ';' && $depth == 0) {
					$i++;
					last;
				}
				$i++;
			}
			my $text = substr($s, $start, $i - $start);
			push @items, { kind => 'decl', text => $text }
				if $text =~ /\S/ && $text !~ /^\s*}\s*$/;
			$pos = $i;
		}
	}
}

# ---- comments and declarations ------------------------------------------
sub comment_text {	# the comment's text without /*, */ and leading " * "
	my ($c) = @_;
	$c =~ s{^/\*+}{};
	$c =~ s{\*+/$}{};
	my @l = split /\n/, $c, -1;
	s/^\s*\*(?: |$)// || s/^\s+// for @l;
	s/\s+$// for @l;
	shift @l while @l && $l[0] eq '';
	pop @l while @l && $l[-1] eq '';
	return join("\n", @l);
}

sub func_name {	# the name of a function declared by a declaration, or undef
	my ($d) = @_;
	(my $t = $d) =~ s{/\*.*?\*/}{}gs;
	return undef if $t =~ /^\s*(?:typedef|struct\s+\w+\s*\{|enum\s+\w*\s*\{)/;
	return $1 if $t =~ /\b(vcpureq_[a-z0-9_]+)\s*\(/;
	return undef;
}

my (%types, @groups, @undocumented, @overview);
my $comment;	# the comment directly above, if nothing came between
my $section;	# the comment above a blank line (for a type definition)
my $group;	# the open group of declarations sharing $comment
for my $it (@items) {
	my $k = $it->{kind};
	if ($k eq 'comment') {
		$comment = $it->{text};
		$section = undef;
		$group = undef;
		next;
	}
	$section = $comment if $k eq 'blank' && defined $comment;
	if ($k eq 'blank' || $k eq 'pp') {
		push @overview, { comment => $comment, text => $it->{text} }
			if $k eq 'pp' && $it->{text} =~ /^#define\s+VCPUREQ_\w+\s*\S/
			   && $it->{text} !~ /^#define\s+\w+_H\s*$/;
		$comment = undef;
		$group = undef;
		next;
	}
	my $d = $it->{text};
	if ($d =~ /^\s*(struct|enum)\s+(vcpureq_\w+)\s*\{/) {
		my $c = $comment // $section;
		$types{"$1 $2"} = { comment => $c, text => $d };
		push @overview, { comment => $c, text => $d };
		$comment = undef;
		$group = undef;
		next;
	}
	$section = undef;
	my $name = func_name($d);
	if (!defined $name) {
		$comment = undef;
		$group = undef;
		next;
	}
	if ($group) {
		push @{$group->{names}}, $name;
		push @{$group->{decls}}, $d;
	} elsif (defined $comment) {
		$group = { comment => $comment, names => [$name], decls => [$d] };
		push @groups, $group;
		$comment = undef;
	} else {
		push @undocumented, $name;
	}
}

# ---- roff ------------------------------------------------------------------
sub esc {	# text for roff: backslashes, leading dots and quotes
	my ($t) = @_;
	$t =~ s/\\/\\e/g;
	$t =~ s/^([.'])/\\&$1/mg;
	return $t;
}

sub verbatim {
	my ($t) = @_;
	return ".nf\n" . esc($t) . "\n.fi\n";
}

# Comment text -> paragraphs: a blank line starts one; a line opening with
# "- " is a bullet; a line opening with "name():" starts a paragraph.
sub prose {
	my ($t) = @_;
	my $out = '';
	my $open = 0;
	for my $l (split /\n/, $t) {
		if ($l eq '') {
			$open = 0;
			next;
		}
		if ($l =~ /^\s*-\s+(.*)/) {
			$out .= ".IP \\(bu 2\n" . esc($1) . "\n";
			$open = 1;
			next;
		}
		if (!$open || $l =~ /^\w+\(\):/) {
			$out .= ".PP\n";
			$open = 1;
		}
		$l =~ s/^\s+//;
		$out .= esc($l) . "\n";
	}
	return $out;
}

# The NAME line (whatis, apropos): a whole sentence.  The first sentence of
# the comment where it is short; otherwise the summary below, written for the
# purpose: a first sentence longer than $max_name with no entry here stops
# the build (never a line cut in the middle).
my $max_name = 110;
my %name_line = (
	vcpureq_guest_kicked => 'Whether this guest-mode instance of a thread-backend vCPU has been kicked',
	vcpureq_make_all_cpus_request => 'Make a request of every vCPU, or of those in a mask, and kick them (kvm_make_all_cpus_request(), kvm_make_vcpus_request_mask())',
	vcpureq_make_vcpus_request => 'Make a request of the vCPUs in a list of indexes and kick them',
	vcpureq_make_vcpus_request_deadline => 'Make a request of the vCPUs in a mask and kick them, waiting for WAIT acknowledgements until a deadline',
	vcpureq_pause => 'Pause vCPUs: return when every target is outside guest mode and stays out until resumed',
	vcpureq_pause_wait => 'Wait again, adding no pause, until vCPUs already paused are parked (after a timed-out vcpureq_pause())',
	vcpureq_post_interrupt => 'Post an interrupt vector to a vCPU (user-space irqchip) and kick it',
	vcpureq_request => 'Make and kick one vCPU with the full flag semantics (NO_ACTION, NO_WAKEUP, WAIT)',
	vcpureq_request_pending => 'Test, clear and check a vCPU\'s requests on its own thread',
	vcpureq_resume => 'Undo one pause of each vCPU of a mask and let those no longer paused run',
	vcpureq_run_on_vcpu => 'Run a function on a vCPU\'s thread, outside guest mode, and return its result',
	vcpureq_run_on_vcpu_async => 'Queue a function to run on a vCPU\'s thread, outside guest mode, with a completion callback',
	vcpureq_trace_write_json => 'Write the recorded trace as Chrome trace-event JSON (Perfetto, chrome://tracing)',
	vcpureq_vcpu_adopt => 'Add a vCPU whose fd and kvm_run mapping the VMM created itself',
	vcpureq_vcpu_block => 'Sleep on the vCPU thread until the vCPU is runnable, an interrupt or a waking request arrives (kvm_vcpu_block())',
	vcpureq_vcpu_block_deadline => 'Sleep as vcpureq_vcpu_block() does, until a deadline at most',
	vcpureq_vcpu_enter => 'Enter and leave guest mode around the VMM\'s own KVM_RUN, with the full request protocol',
	vcpureq_vcpu_exit_epoch => 'The vCPU\'s exit epoch, bumped each time it leaves guest mode or a lockless walk',
	vcpureq_vcpu_is_blocking => 'Whether the vCPU is registered as a sleeper in vcpureq_vcpu_block() (kvm_vcpu_is_blocking())',
	vcpureq_vcpu_lapic_in_kernel => 'Whether the vCPU has an in-kernel LAPIC (KVM backend)',
	vcpureq_vcpu_paused => 'Whether the vCPU is paused, and whether it is parked',
	vcpureq_vcpu_run => 'One guest entry with the full request protocol (the kernel\'s vcpu_enter_guest())',
	vcpureq_vcpu_stats => 'Copy a vCPU\'s counters',
	vcpureq_vcpu_take_interrupt => 'Take the highest pending posted interrupt vector on the vCPU thread',
	vcpureq_vcpu_unbind => 'Stop being the vCPU thread',
	vcpureq_version => 'The version of the vcpureq library linked at run time',
	vcpureq_vm_create => 'Create a VM and its vCPUs in one call',
	vcpureq_vm_destroy => 'Shut a VM down: close the fds and unmap the mappings vcpureq made, release the kick signal',
	vcpureq_vm_dump_stats => 'Write every counter of a VM, per vCPU and per request number, as text or JSON',
	vcpureq_vm_kick_signal => 'The kick signal and the kick mechanism a VM uses',
	vcpureq_vm_kvm_fd => 'The KVM file descriptors and the kvm_run mapping of a VM and its vCPUs',
	vcpureq_vm_reset_stats => 'Set every counter of a VM to 0',
	vcpureq_vm_request_stats => 'Copy the VM-wide counters of one request number',
	vcpureq_vm_vcpu => 'Look up the vCPUs of a VM by index or by id, and their count and limit',
	vcpureq_walk_lockless_begin => 'Begin and end a lockless-walk section on the vCPU thread (walk_shadow_page_lockless_begin()/end())',
);

sub summary {	# the NAME line of the page of $first
	my ($first, $t) = @_;
	return $name_line{$first} if exists $name_line{$first};
	$t =~ s/\s+/ /g;
	$t =~ s/^(.*?)\.(?:\s|$).*/$1/;
	die "$0: $first: the first sentence of its comment is longer than $max_name characters: " .
		"add a NAME line for it to %name_line in $0\n" if length $t > $max_name;
	return $t;
}

sub th {
	my ($name) = @_;
	return ".TH \U$name\E 3 \"\" \"vcpureq $version\" \"vcpureq Manual\"\n";
}

my $mandir = "$outdir/man3";
system('mkdir', '-p', $mandir) == 0 or die "$0: mkdir $mandir failed\n";
# Pages of functions that left the header must not linger.
unlink glob("$mandir/vcpureq*.3");

sub write_page {
	my ($file, $text) = @_;
	open(my $o, '>', "$mandir/$file") or die "$0: $mandir/$file: $!\n";
	print $o $text;
	close $o or die "$0: $mandir/$file: $!\n";
}

for my $g (@groups) {
	my @names = @{$g->{names}};
	my $text = comment_text($g->{comment});
	my $page = th($names[0]);
	$page .= ".SH NAME\n" . join(', ', @names) . " \\- " . esc(summary($names[0], $text)) . "\n";
	$page .= ".SH SYNOPSIS\n.nf\n.B #include <vcpureq/vcpureq.h>\n.PP\n";
	my %used;
	for my $d (@{$g->{decls}}) {
		(my $p = $d) =~ s/\s+/ /g;
		$page .= esc($p) . "\n";
		$used{"$1 $2"} = 1 while $d =~ /\b(struct|enum)\s+(vcpureq_\w+)/g;
	}
	$page .= ".fi\n.SH DESCRIPTION\n" . prose($text);
	my @defined = grep { $types{$_} } sort keys %used;
	if (@defined) {
		$page .= ".SH TYPES\n";
		for my $t (@defined) {
			my $c = $types{$t}{comment};
			$page .= prose(comment_text($c)) if defined $c;
			$page .= ".PP\n" . verbatim($types{$t}{text});
		}
	}
	$page .= ".SH SEE ALSO\n.BR vcpureq (3)\n";
	write_page("$names[0].3", $page);
	write_page("$_.3", ".so man3/$names[0].3\n") for @names[1 .. $#names];
}

# The overview: the header's opening comment, then the constants and types.
{
	my ($first) = grep { $_->{kind} eq 'comment' && $_->{text} !~ /SPDX/ } @items;
	my $page = th('vcpureq');
	$page .= ".SH NAME\nvcpureq \\- the KVM vCPU request protocol for user-space VMMs\n";
	$page .= ".SH SYNOPSIS\n.nf\n.B #include <vcpureq/vcpureq.h>\n.fi\n";
	$page .= "Link with \\fI-lvcpureq\\fP (pkg-config: \\fIvcpureq\\fP; CMake: \\fIvcpureq::vcpureq\\fP).\n";
	$page .= ".SH DESCRIPTION\n" . prose(comment_text($first->{text})) if $first;
	$page .= ".SH CONSTANTS AND TYPES\n";
	for my $o (@overview) {
		$page .= prose(comment_text($o->{comment})) if defined $o->{comment};
		$page .= ".PP\n" . verbatim($o->{text});
	}
	$page .= ".SH FUNCTIONS\n";
	$page .= ".BR $_ (3)\n" for map { @{$_->{names}} } @groups;
	write_page('vcpureq.3', $page);
}

if (@undocumented) {
	print STDERR "$0: warning: no page for @undocumented: no comment directly above the declaration\n";
}
exit 0;
