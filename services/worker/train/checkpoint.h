// Checkpoints (everything a resume needs) and encoder exports (the backbone alone, for the eval
// path), stored as sealed files (sealed_file.h: magic, version, kind, length, SHA-256; written
// atomically). Format in docs/core.md "Checkpoints".
//
// The payload is a LibTorch pickle archive (torch::pickle_save) of a string-keyed dictionary; in
// Python, torch.load(io.BytesIO(open(path, "rb").read()[56:])) reads it. Tensors are stored on
// the CPU and restored to the trainer's device, so a checkpoint written on a GPU resumes on a CPU
// and vice versa.
//
// A checkpoint holds: the model options and head set; every parameter and buffer (BatchNorm
// running statistics included) by name; the AdamW state of every parameter (step, exp_avg,
// exp_avg_sq); the schedule position (step) and epoch; LibTorch's CPU generator state (and the
// CUDA generator's of the trainer's device); the caller's opaque data cursor; in fp16 the dynamic
// loss scale (scale, clean steps in a row, skipped steps).
//
// Loading verifies everything first (checksum, format, model options, every name, dtype and shape)
// and only then modifies the trainer: a refused file leaves the trainer as it was.
//
// Errors: Error(kNotFound) missing file; Error(kDataLoss) corrupt, truncated or undecodable file;
// Error(kFailedPrecondition) a valid file of another model (backbone, head sizes, heads) or the
// wrong kind (an encoder export given to LoadCheckpoint); Error(kUnavailable) write failures.
// Every message starts with "checkpoint <path>: ". Functions block on disk I/O.
// Thread-safety: the trainer/backbone passed in must not be used concurrently.
#ifndef TECL_SERVICES_WORKER_TRAIN_CHECKPOINT_H_
#define TECL_SERVICES_WORKER_TRAIN_CHECKPOINT_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>

#include "services/worker/model/backbone.h"
#include "services/worker/train/sealed_file.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker::core {

// Writes the trainer's full state to `path` (atomically; the folder is created if needed).
// `data_cursor` is opaque to the core (the runner's sampler position) and comes back from
// LoadCheckpoint unchanged. File operations go through `env` (sealed_file.h).
WrittenFile SaveCheckpoint(const std::string& path, Trainer& trainer, const std::string& data_cursor,
                           Env* env = Env::Default());

struct ResumeState {
  int64_t step = 0;  // Optimiser steps taken when the checkpoint was written.
  int64_t epoch = 0;
  std::string data_cursor;
  std::string sha256;  // Of the payload, as verified.
};

// Restores a checkpoint written by SaveCheckpoint into a trainer built with the same model and
// method options: parameters, buffers, optimiser state, step, epoch, generator state.
// With `expected_sha256` (the digest registered with the coordinator, hex), a file whose payload
// has another digest is refused with Error(kDataLoss) before anything is decoded.
ResumeState LoadCheckpoint(const std::string& path, Trainer& trainer,
                           const std::string& expected_sha256 = "");

// Writes the backbone's weights and name (and the step it was trained for) to `path` (named
// EncoderFileName(step) in a checkpoint folder), atomically through `env`.
WrittenFile ExportEncoder(const std::string& path, Backbone& backbone, int64_t step,
                          Env* env = Env::Default());

struct LoadedEncoder {
  std::shared_ptr<Backbone> backbone;  // On the requested device, in eval mode.
  int64_t step = 0;                    // Training steps behind these weights.
  SealedKind source = SealedKind::kEncoder;
  std::string sha256;
};

// Loads the encoder from an export (ExportEncoder) or from a full checkpoint (SaveCheckpoint),
// onto `device`.
LoadedEncoder LoadEncoder(const std::string& path, const c10::Device& device);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_CHECKPOINT_H_
