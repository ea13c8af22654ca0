/*
 * agrad/mpi.h - the MPI transport of agrad/dist.h, in its own library
 * (libagrad-mpi, pkg-config agrad-mpi) so that libagrad never links MPI.
 * docs/distributed.md tells how to launch with mpirun.
 */
#ifndef AGRAD_MPI_H
#define AGRAD_MPI_H

#include <mpi.h>
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dist.init_process_group("mpi"): a communicator over all the processes mpirun
 * started (a duplicate of MPI_COMM_WORLD).  Initialises MPI with
 * MPI_THREAD_FUNNELED when nobody has (argc and argv as MPI_Init's, may be NULL);
 * MPI is then finalised when the last communicator this library made is freed.
 * Also sets this rank's thread count (ag_comm_set_threads) so the ranks of one
 * machine share its cores.  Returns the communicator (free it with ag_comm_free),
 * or NULL with AG_ERR_BACKEND (MPI failed, or was finalised already) or
 * AG_ERR_NOMEM. */
AG_API ag_comm *ag_mpi_world(int *argc, char ***argv);
/* A communicator over comm (duplicated: collectives of agrad do not mix with the
 * caller's); MPI must be initialised.  NULL with AG_ERR_BACKEND or AG_ERR_NOMEM. */
AG_API ag_comm *ag_mpi_comm(MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
