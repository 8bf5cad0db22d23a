"""The twin contract: the public functions and classes pytorch_impl/ and keras_impl/ provide, file by
file and in order, with their parameters and what they return. A name both twins use means the same
thing on both sides; where the libraries' mechanisms differ (a context manager against a dtype policy,
a scheduler against a learning rate), each side has its own name, marked with the one side that has it.
tests/test_impls.py checks both packages against this list (names, order, parameter names)."""

from __future__ import annotations

PT, K = "pytorch_impl", "keras_impl"

# file -> [(name, parameters, what it is / returns[, the only side that has it])]; parameters may be a
# {side: parameters} dict where the library's calling convention fixes them (a loss function's arguments)
CONTRACT = {
    "model.py": [
        ("library_default", "cls, name", "a default read from the installed library's signature"),
        ("negative_slope", "config", "the LeakyReLU slope this side uses (native: the library's default)"),
        ("class ExactDense", "", "x @ kernel + bias written out (ops=exact)"),
        ("class ExactLeakyReLU", "", "LeakyReLU written out"),
        ("class ExactBatchNorm", "", "batch norm written out, either running-variance convention"),
        ("class ExactLayerNorm", "", "layer norm written out"),
        ("class SamePadConv2d", "", "a strided convolution padded as Keras' 'same'", PT),
        ("class LastGRU", "", "nn.GRU giving its last state, as Keras' GRU", PT),
        ("class LastLSTM", "", "nn.LSTM giving its last state; optionally one trained bias", PT),
        ("class ExactGRU", "", "the GRU cell written out (ops=exact)"),
        ("class ExactLSTM", "", "the LSTM cell written out (ops=exact)"),
        ("class SharedDropout", "", "dropout whose masks come from shared/plan.py"),
        ("class FlattenNHWC", "", "flatten in the neutral (row, column, channel) order"),
        ("idioms", "", "training.Idioms: the library's own training choices where a config says native"),
        ("training_plan", "config", "training.Training: the config's training specs on this side"),
        ("bn_new_weight", "config", "the weight of the new batch statistics in the running averages"),
        ("bn_eps", "config", "the batch-norm epsilon this side uses"),
        ("stride_padding", "config", "how a strided convolution pads: symmetric (native) or same", PT),
        ("ln_eps", "config", "the layer-norm epsilon this side uses"),
        ("lstm_single", "config", "whether the LSTM has one trained bias (Keras' own form)", PT),
        ("translate", "layer, config", "one plan.Layer as the library's layer; an unknown kind raises"),
        ("build_model", "config", "the plan's layers as the library's model"),
        ("loss_fn", "s", "the batch-mean loss of a training.Loss, in the library's loss-call convention"),
        ("autocast", "config, device", "the context manager the forward pass runs in (torch.autocast)", PT),
        ("grad_scaler", "config, device", "torch.amp.GradScaler for float16, else None", PT),
        ("dtype_policy", "config", "the dtype-policy name every layer takes (mixed_* under mixed precision)", K),
        ("loss_scale_optimizer", "config, optimizer", "the optimizer, wrapped in LossScaleOptimizer for float16", K),
        (
            "nll_loss",
            {PT: "log_probs, target, reduction", K: "y_true, log_probs"},
            "minus the true class's log-probability",
        ),
        ("class MeanLoss", "", "the batch mean of per-sample losses, written out"),
        ("mean", "values", "sum / n in the values' dtype"),
        ("clip_exact", "grads, norm_max, scope", "the gradients clipped by norm, written out"),
        ("class WrittenOut", "", "every optimizer of shared/training.py written out, either definition"),
        ("build_scheduler", "s, optimizer", "the library scheduler the loop steps every s.unit, or None", PT),
        ("learning_rate", "s", "what the optimizer's learning_rate takes: a number or a schedule", K),
        ("build_optimizer", "t, model", "the library's optimizer for a training.Training, or WrittenOut"),
        (
            "clip_gradients",
            "t, model",
            "the library's clipping between backward and step (Keras: inside the optimizer)",
        ),
        ("dense_layers", "model", "the weighted layers in the plan's order"),
        ("to_neutral", "m, kernel", "a kernel in the neutral layout"),
        ("from_neutral", "m, kernel", "a neutral kernel in the layer's own layout"),
        ("neutral_arrays", "m, read", "a weighted layer's (kernel, bias) in the neutral layout, read part by part"),
        ("to_numpy", "t", "a tensor as numpy (bfloat16 as float32, exactly)"),
        ("export_weights", "model", "[(kernel, bias)] per weighted layer, neutral layout"),
        ("import_weights", "model, layers", "load [(kernel, bias)]; a shape that does not fit raises"),
        ("norm_layers", "model, kind", "the normalisation layers of one kind (weights.NORMS) in order"),
        ("export_norms", "model", "{kind: [parts per layer]} in weights.NORMS' order of parts"),
        ("import_norms", "model, norms", "load the normalisation layers' state; a count that does not fit raises"),
    ],
    "train.py": [
        ("class State", "", "a run's model, optimizer, loss and loop state"),
        ("setup", "config, threads", "threads, device, determinism, seed; the environment record"),
        ("build", "config, env", "a State for the config"),
        ("compile_step", "state", "the whole SGD step as one function for torch.compile (compile=step)", PT),
        ("jit_compile", "config", "fit's jit_compile argument (compile=step is compile=on here)", K),
        ("augment", "images, names, rotate_degrees, translate_fraction, seed", "augment_impl=native's images"),
        ("to_device", "state, x_train, y_train, x_test, y_test, data", "the data set on the device"),
        ("precision", "state, xb", "the dtype each layer computes in, read from the program"),
        ("param_count", "state", "trainable parameters of the built model"),
        ("batches", "state, tensors, index_batches", "the shared batch order as the library's batches"),
        ("set_masks", "state, masks", "hand the shared dropout masks to the model"),
        ("train_step", "state, xb, yb", "one step: (loss, number correct)"),
        (
            "train_epoch",
            "state, tensors, index_batches, tick, epoch",
            "one epoch: (mean loss, correct, first bad step)",
        ),
        ("end_epoch", "state", "what happens between epochs"),
        ("activations", "state, xb", "every layer's output (lockstep)"),
        ("gradients", "state, xb, yb, training", "the weighted layers' gradients (lockstep)"),
        ("sync", "state", "wait for the device"),
        ("floor_epoch", "state, tensors, index_batches", "an epoch of the MLP's matrix products alone (bench)"),
        (
            "graph_floor",
            "state, tensors, index_batches",
            "the same products replayed from a CUDA graph, as an epoch to time; None where there is none (bench)",
        ),
        ("evaluate", "state, tensors", "(test loss, test accuracy)"),
        ("predict", "state, x", "the model's outputs"),
        ("save_checkpoint", "state, path, epoch", "everything a resume needs, written atomically"),
        ("load_checkpoint", "state, path", "the epoch a checkpoint resumes after"),
        ("export_weights", "state", "the neutral weights"),
        ("import_weights", "state, layers", "load neutral weights"),
        ("export_norms", "state", "the normalisation layers' state"),
        ("import_norms", "state, norms", "load the normalisation layers' state"),
    ],
    "defaults.py": [
        ("arg", "fn, name", "a signature default"),
        ("init_bounds", "", "the default initialisers' bounds, measured"),
        ("init_names", "layer", "the initialisers a layer uses, read"),
        ("conv_probe", "", "the convolution's defaults and layouts"),
        ("augmentation", "images, angle, shift", "the library's rotation and shift of images"),
        ("stride_probe", "", "where a strided 'same' convolution puts its padding, measured"),
        ("slope_probe", "", "LeakyReLU's slope, measured"),
        ("momentum_form", "", "SGD's momentum form, measured"),
        ("adam_eps_probe", "", "Adam's effective epsilon at step 1, measured"),
        ("rmsprop_probe", "", "RMSprop's defaults and two measured steps"),
        ("loss_probe", "", "the loss's reduction and clipping"),
        ("fit_api", "", "the training-loop API's defaults"),
        ("batchnorm_probe", "", "batch norm's defaults, measured"),
        ("layernorm_probe", "", "layer norm's epsilon, read and measured"),
        ("recurrent_probe", "", "the GRU's and LSTM's gate order (measured), layouts and initialisers"),
        ("dropout_probe", "", "dropout's defaults"),
        ("weight_decay_probe", "", "what weight_decay does, measured"),
        ("clip_probe", "", "what the clipping idiom clips, measured"),
        ("schedule_probe", "", "when a schedule advances, measured"),
        ("label_smoothing_probe", "", "label smoothing's availability"),
        ("precision", "", "the float32 matmul precision"),
        ("matmul_measured", "", "a float32 product on the run's device against float64 (TF32 or not)"),
        ("mixed_precision_probe", "", "mixed precision's dtypes and loss scaling, measured"),
        ("compilation", "", "the default compilation"),
        ("threads", "", "the thread pools"),
        ("probe", "", "every default in one dict (keys shared by both sides)"),
    ],
    "cli.py": [
        ("load_impl", "backend, config", "the implementation module for a backend"),
        ("main", "argv", "the worker's command line"),
    ],
}


def expected(side: str, file: str) -> list[str]:
    """The contract for one side and file, as 'name(parameters)' / 'class Name' in order."""
    out = []
    for name, params, _what, *only in CONTRACT[file]:
        if only and only[0] != side:
            continue
        params = params[side] if isinstance(params, dict) else params
        out.append(name if name.startswith("class ") else f"{name}({params})")
    return out
