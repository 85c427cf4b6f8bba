#!/bin/sh
# Check the vcpu-requests.rst statement map of docs/protocol.md against the
# tree, so that it cannot go stale:
#  - rows are numbered S1, S2, ... without gaps, each with a status of
#    "tested", "model only", "deviates: <reason>" (naming where the user is
#    told) or "n/a: <reason>", and the "Counts:" line below the table agrees;
#  - every row but an n/a one cites evidence;
#  - every CTest test the evidence cites (`x.{kvm,thread}` = x.kvm, x.thread)
#    is registered (ctest -N in BUILD_DIR);
#  - every model check it cites is a `check NAME` of model/run.sh;
#  - every mutant it cites (mutant `NAME`) is a tests/mutants/NAME.diff;
#  - docs/protocol.md, docs/verification.md and model/README.md stand alone
#    (no reference to the design brief, DESIGN.md).
#
#   tools/check-rst-map.sh SOURCE_DIR BUILD_DIR
# Exits 0 if all holds, 1 (listing every problem) if not, 2 on bad usage.
set -u
src=${1:?usage: check-rst-map.sh SOURCE_DIR BUILD_DIR}
build=${2:?usage: check-rst-map.sh SOURCE_DIR BUILD_DIR}
map=$src/docs/protocol.md
for f in "$map" "$src/model/run.sh" "$src/tests/mutants/README.md"; do
	[ -r "$f" ] || { echo "check-rst-map: $f missing" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rst-map.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

# What exists: registered tests, model checks, mutants (lower case).
(cd "$build" && ctest -N) 2>/dev/null |
	sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' | sort -u >"$tmp/tests"
if [ ! -s "$tmp/tests" ]; then
	echo "check-rst-map: no tests registered in $build (configure it first)" >&2
	exit 2
fi
sed -n 's/^[[:space:]]*check \([a-z0-9-]*\) .*/\1/p' "$src/model/run.sh" | sort -u >"$tmp/model"
# Mutants: one diff each in tests/mutants/ (what catches it: its header).
for d in "$src"/tests/mutants/*.diff; do
	basename "$d" .diff
done | sort -u >"$tmp/mutants"

# The map: one line per cited thing, "KIND ROW NAME", and row problems.
perl -e '
	my ($map) = @ARGV;
	open my $fh, "<", $map or die "$map: $!\n";
	my ($in, $n, %count, $counts_line, @rows) = (0, 0);
	while (<$fh>) {
		$in = 1 if /^## vcpu-requests\.rst, statement by statement/;
		next unless $in;
		$in = 0, next if /^## / && !/statement by statement/;
		$counts_line .= $_ if /^Counts:/ .. /^$/;
		next unless /^\| S(\d+) \|/;
		my $s = $1;
		$n++;
		print "problem S$s: numbered S$s, expected S$n\n" if $s != $n;
		# split on unescaped pipes
		my $line = $_;
		$line =~ s/\\\|/\x01/g;
		my @c = map { s/\x01/|/gr } split /\s*\|\s*/, $line;
		shift @c;   # before the first pipe
		if (@c != 5) {
			print "problem S$s: ", scalar(@c), " columns, expected 5\n";
			next;
		}
		my ($num, $stmt, $where, $ev, $status) = @c;
		my $kind;
		if ($status =~ /^tested$/) { $kind = "tested" }
		elsif ($status =~ /^model only$/) { $kind = "model only" }
		elsif ($status =~ /^deviates: \S.*\btold\b/) { $kind = "deviates" }
		elsif ($status =~ /^n\/a: \S/) { $kind = "n/a" }
		else { print "problem S$s: status \"$status\" is not tested, model only, deviates: <reason, where the user is told> or n/a: <reason>\n"; next }
		$count{$kind}++;
		my $cited = 0;
		while ($ev =~ /(mutant )?`([^`]+)`/g) {
			my ($m, $t) = ($1, $2);
			if ($m && $t =~ /^[A-Z][A-Z0-9_]+$/) {
				print "mutant S$s ", lc $t, "\n"; $cited++;
			} elsif ($t =~ /^(sc|tso|full)-[a-z0-9-]+$/) {
				print "model S$s $t\n"; $cited++;
			} elsif ($t =~ /^([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)\.\{kvm,thread\}$/) {
				print "test S$s $1.kvm\ntest S$s $1.thread\n"; $cited++;
			} elsif ($t =~ /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/ && $t =~ /^test_|_tsan$|\./) {
				print "test S$s $t\n"; $cited++;
			}
		}
		print "problem S$s: cites no test, model check or mutant\n"
			if !$cited && $kind ne "n/a";
	}
	print "problem: no statement rows found\n" unless $n;
	my $want = sprintf "%d statements: %d tested, %d model only, %d deviate, %d n/a",
		$n, map { $count{$_} // 0 } "tested", "model only", "deviates", "n/a";
	(my $got = $counts_line // "") =~ s/\s*\n\s*/ /g;
	$got =~ s/ \([^)]*\)//g;
	print "problem: the Counts line says \"$got\", the table has \"$want\"\n"
		unless $got =~ /^Counts: \Q$want\E\.?\s*$/;
	print "summary $want\n";
' "$map" >"$tmp/cited" || exit 2

status=0
grep '^problem' "$tmp/cited" && status=1
while read -r kind row name; do
	case $kind in
	test) list=tests what="registered CTest test" ;;
	model) list=model what="check in model/run.sh" ;;
	mutant) list=mutants what="mutant of tests/mutants/ (no $name.diff there)" ;;
	*) continue ;;
	esac
	grep -qx "$name" "$tmp/$list" ||
		{ echo "$row: $name is not a $what"; status=1; }
done <"$tmp/cited"

for f in docs/protocol.md docs/verification.md model/README.md; do
	if grep -n 'DESIGN\.md' "$src/$f" >"$tmp/design" 2>/dev/null; then
		sed "s|^|$f:|; s|$| (refers to DESIGN.md: say it so that it stands alone)|" "$tmp/design"
		status=1
	fi
done

nt=$(grep -c '^test ' "$tmp/cited")
nm=$(grep -c '^model ' "$tmp/cited")
nu=$(grep -c '^mutant ' "$tmp/cited")
summary=$(sed -n 's/^summary //p' "$tmp/cited")
if [ $status -eq 0 ]; then
	echo "rst map: $summary; $nt test, $nm model and $nu mutant citations, all found"
else
	echo "rst map: problems above ($summary)"
fi
exit $status
