/*
 * agrad/state.h - named collections of tensors (PyTorch's state_dict) and
 * their files in the safetensors format, so weights move between agrad and
 * PyTorch.
 *
 * A state dict owns a reference to each tensor it holds; tensors read back
 * from it are borrowed.  Modules and optimizers fill one to save and read one
 * to load.
 */
#ifndef AGRAD_STATE_H
#define AGRAD_STATE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ag_state_dict ag_state_dict;

/* A new empty dict, freed with ag_state_dict_free; NULL on ENOMEM. */
AG_API ag_state_dict *ag_state_dict_new(void);
/* Frees the dict and drops its references.  NULL is ignored. */
AG_API void ag_state_dict_free(ag_state_dict *sd);
/* Stores t under name (copied), replacing an existing entry; the dict retains t.
 * Returns AG_OK, AG_ERR_ARG (NULL or empty name), AG_ERR_NOMEM. */
AG_API ag_status ag_state_dict_set(ag_state_dict *sd, const char *name, ag_tensor *t);
/* Stores a number as a 0-d float64 tensor. */
AG_API ag_status ag_state_dict_set_scalar(ag_state_dict *sd, const char *name, double value);
/* The tensor stored under name (borrowed), or NULL with AG_ERR_ARG recorded. */
AG_API ag_tensor *ag_state_dict_get(const ag_state_dict *sd, const char *name);
/* The number stored under name; NAN with an error if absent or not one element. */
AG_API double ag_state_dict_get_scalar(const ag_state_dict *sd, const char *name);
/* Number of entries, and the i-th name / tensor in insertion order (NULL if out of range). */
AG_API int ag_state_dict_size(const ag_state_dict *sd);
AG_API const char *ag_state_dict_name(const ag_state_dict *sd, int i);
AG_API ag_tensor *ag_state_dict_tensor(const ag_state_dict *sd, int i);

/* Writes sd to path in the safetensors format (F32, F64, I64, BOOL, U8 tensors),
 * atomically: a temporary file beside it (mode 0666 less the umask, or the mode of
 * the file it replaces), written and fsynced, renamed over path, the directory
 * fsynced (docs/design.md, "Saved files").  On failure path is untouched.
 * Returns AG_OK, AG_ERR_ARG, AG_ERR_FORMAT (an entry named "__metadata__", or a
 * name that is not UTF-8: a file cannot hold them), AG_ERR_IO (with the path and
 * the system's reason), AG_ERR_NOMEM. */
AG_API ag_status ag_save_safetensors(const ag_state_dict *sd, const char *path);
/* Reads a safetensors file into a new dict (caller frees).  Checks the whole header
 * before allocating any tensor (JSON, UTF-8, dtypes, shapes, offsets inside the
 * file, unique names, the data section covered exactly with no overlap) and BOOL
 * data (0 or 1); NULL with AG_ERR_IO, AG_ERR_FORMAT naming the file and the
 * problem, or AG_ERR_NOMEM. */
AG_API ag_state_dict *ag_load_safetensors(const char *path);

#ifdef __cplusplus
}
#endif
#endif
