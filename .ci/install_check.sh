#!/bin/sh
# Installs the build into a temporary prefix and builds a user program against
# it with pkg-config, as a user would.  Prints TAP lines.
set -u
build=${1:-build}
prefix=$(mktemp -d)
n=0
check() { # check NAME COMMAND...
    name=$1; shift
    n=$((n + 1))
    if "$@" >/tmp/agrad-install-check.log 2>&1; then echo "ok $n - $name"
    else echo "not ok $n - $name"; sed 's/^/# /' /tmp/agrad-install-check.log; fi
}
check "meson install into a prefix" meson install -C "$build" --destdir "$prefix" --no-rebuild
pc=$(dirname "$(find "$prefix" -name agrad.pc | head -n 1)")
root=$(find "$prefix" -name agrad.h -path '*include/agrad/*' | head -n 1 | sed 's|/include/agrad/agrad.h||')
cat >"$prefix/user.c" <<'C'
#include <agrad/agrad.h>
#include <stdio.h>
int main(void) {
    ag_scope_begin();
    ag_tensor *x = ag_requires_grad_(ag_full(AG_SHAPE(3), 2.0, AG_F32), true);
    ag_tensor *y = ag_sum(ag_mul(x, x));
    int bad = !y || ag_backward(y) != AG_OK;
    double g = ag_get(ag_grad(x), (int64_t[]){0});
    ag_scope_end();
    printf("grad %g\n", g);
    return bad || g != 4.0;
}
C
check "a user program compiles with pkg-config --cflags --libs agrad" sh -c \
    "PKG_CONFIG_PATH=$pc cc -std=c11 -Wall -Wextra -Werror $prefix/user.c \$(PKG_CONFIG_PATH=$pc pkg-config --define-variable=prefix=$root --cflags --libs agrad) -o $prefix/user"
check "the user program runs against the installed shared library" sh -c \
    "LD_LIBRARY_PATH=\$(dirname \$(find $prefix -name 'libagrad.so' | head -n 1)) $prefix/user"
check "the shared library exports only ag_ symbols" sh -c \
    "! nm -D --defined-only \$(find $prefix -name 'libagrad.so' | head -n 1) | awk '{print \$3}' | grep -v '^ag_' | grep ."
if [ -n "$(find "$prefix" -name agrad-mpi.pc | head -n 1)" ]; then
    cat >"$prefix/user_mpi.c" <<'C'
#include <agrad/agrad.h>
#include <agrad/mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    ag_comm *c = ag_mpi_world(&argc, &argv);
    double v = c ? ag_comm_rank(c) + 1 : 0;
    int bad = !c || ag_comm_average(c, &v, 1) != AG_OK || v != (ag_comm_size(c) + 1) / 2.0;
    ag_comm_free(c);
    return bad;
}
C
    # --define-variable moves every .pc's prefix, MPI's too: its flags are asked again
    # without it (an ordinary install needs neither).
    mpi_pc=$(PKG_CONFIG_PATH=$pc pkg-config --print-requires agrad-mpi | grep -v '^agrad' | head -n 1)
    check "a user program compiles with pkg-config --cflags --libs agrad-mpi" sh -c \
        "PKG_CONFIG_PATH=$pc cc -std=c11 -Wall -Wextra -Werror $prefix/user_mpi.c \$(PKG_CONFIG_PATH=$pc pkg-config --define-variable=prefix=$root --cflags --libs agrad-mpi) \$(pkg-config --cflags --libs $mpi_pc) -o $prefix/user_mpi"
    check "it runs under mpirun -np 2 against the installed libraries" sh -c \
        "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 LD_LIBRARY_PATH=\$(dirname \$(find $prefix -name 'libagrad.so' | head -n 1)) mpirun -np 2 $prefix/user_mpi"
    check "libagrad does not link MPI" sh -c \
        "! ldd \$(find $prefix -name 'libagrad.so' | head -n 1) | grep -q libmpi"
fi
echo "1..$n"
rm -rf "$prefix"
