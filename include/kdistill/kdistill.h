#pragma once

/// The umbrella header: everything in kdistill's public API.
///
/// Example:
/// ```
/// #include <kdistill/kdistill.h>
/// auto loss = kdistill::kd_loss(s, t, y, kdistill::KDLossOptions().temperature(4.0).alpha(0.9));
/// ```

#include "kdistill/bench/compare.h"
#include "kdistill/bench/generation.h"
#include "kdistill/bench/latency.h"
#include "kdistill/bench/paired.h"
#include "kdistill/bench/report.h"
#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"
#include "kdistill/core/precision.h"
#include "kdistill/core/system.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/data/eigen.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/data/idx.h"
#include "kdistill/data/mnist.h"
#include "kdistill/data/spec.h"
#include "kdistill/data/tensor_dataset.h"
#include "kdistill/data/tokens.h"
#include "kdistill/export/export.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/io/sha256.h"
#include "kdistill/losses/attention.h"
#include "kdistill/losses/divergence.h"
#include "kdistill/losses/dkd.h"
#include "kdistill/losses/kd_loss.h"
#include "kdistill/losses/objective.h"
#include "kdistill/losses/schedule.h"
#include "kdistill/losses/sparse.h"
#include "kdistill/losses/tokens.h"
#include "kdistill/metrics/evaluate.h"
#include "kdistill/metrics/metrics.h"
#include "kdistill/metrics/significance.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/models/sequence.h"
#include "kdistill/runtime/runtime.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/teachers/teacher.h"
#include "kdistill/train/config.h"
#include "kdistill/train/distributed.h"
#include "kdistill/train/run.h"
#include "kdistill/train/trainer.h"
#include "kdistill/version.h"
