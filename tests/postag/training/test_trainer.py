import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from postag.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, build
from postag.data import dataset as datasets
from postag.data.batching import collate
from postag.data.readers import read_conllu
from postag.models.checkpoint import load_checkpoint, save_checkpoint
from postag.serving.inference import tag_sentences
from postag.training.objective import Objective
from postag.training.trainer import (
    REPLAYED_METRICS,
    TrainingDiverged,
    TrainingState,
    evaluate,
    fit,
    learning_rate,
    predict,
    warmed_up_ema,
)

# The most frequent XPOS tag (NN) is 13.2% of EWT: what a one-tag model scores.
MAJORITY_TAG_RATE = 0.132


def fit_keeping_states(config: RunConfig):
    """(config, dataset, fit's result, the training state after each epoch)."""
    prepared = datasets.load(config.data)
    states = []
    # A state refers to the weights training goes on changing: keep a snapshot of each.
    result = fit(config, prepared, callbacks=[lambda r, s: states.append(s.snapshot())])
    return config, prepared, result, states


@pytest.fixture(scope="module")
def trained(tiny_config):
    return fit_keeping_states(tiny_config)


def test_short_real_run_learns_far_beyond_the_majority_tag(trained):
    _, _, result, _ = trained
    losses = [epoch.train_loss for epoch in result.history]
    assert losses[-1] < losses[0] / 2
    assert result.best_score > MAJORITY_TAG_RATE + 0.35


def test_best_epoch_is_the_highest_validation_accuracy(trained):
    config, prepared, result, _ = trained
    accuracies = [epoch.val_accuracy for epoch in result.history]
    assert result.best_score == max(accuracies)
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    # The returned model holds the best epoch's weights, not the last epoch's.
    again = evaluate(result.model, prepared.splits["dev"], 64, torch.device("cpu"))
    assert again.accuracy == pytest.approx(result.best_score)


def test_epochs_validate_macro_f1_and_loss_as_independent_counts_do(trained):
    _, prepared, result, _ = trained
    dev = prepared.splits["dev"]
    predictions = predict(result.model, dev, 64, torch.device("cpu"))
    best = result.history[result.best_epoch - 1]
    # Macro F1 over the tags present in the dev set, each tag's F1 counted by hand.
    gold, guess = predictions.gold.tolist(), predictions.predicted.tolist()
    f1s = []
    for tag in set(gold):
        hits = sum(g == p == tag for g, p in zip(gold, guess, strict=True))
        precision = hits / max(guess.count(tag), 1)
        recall = hits / gold.count(tag)
        f1s.append(2 * precision * recall / (precision + recall) if hits else 0.0)
    assert best.val_macro_f1 == pytest.approx(sum(f1s) / len(f1s))
    # The loss: the best weights' mean cross-entropy of the gold tag per dev token, below a
    # uniform guess's.
    assert best.val_loss == pytest.approx(predictions.loss)
    assert 0 < best.val_loss < math.log(prepared.num_classes)


def test_the_objective_chooses_the_best_epoch(tiny_config):
    """On the loss, minimised, the best epoch is the one of lowest validation loss, and the
    returned model holds its weights, whichever epoch accuracy would have picked."""
    by_loss = TrainConfig(
        **{**tiny_config.train.__dict__, "objective": Objective("val_loss", "min")}
    )
    config = replace(tiny_config, train=by_loss)
    config, prepared, result, states = fit_keeping_states(config)
    losses = [epoch.val_loss for epoch in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1
    assert result.best_score == min(losses) == states[-1].best_score
    again = predict(result.model, prepared.splits["dev"], 64, torch.device("cpu"))
    assert again.loss == pytest.approx(min(losses))


def test_a_training_state_saved_before_the_objective_still_resumes():
    """States in checkpoints written when accuracy alone chose epochs: `best_val_accuracy`,
    and epochs that did not validate macro F1 or the loss."""
    epoch = {
        "epoch": 1,
        "train_loss": 1.0,
        "val_accuracy": 0.5,
        "epoch_seconds": 1.0,
        "tokens_per_second": 1.0,
        "grad_norm_first_lstm": 0.1,
        "grad_norm_last_lstm": 0.1,
    }
    state = TrainingState.from_dict(
        {"epoch": 1, "best_epoch": 1, "best_val_accuracy": 0.5, "history": [epoch]}
    )
    assert state.best_score == 0.5
    assert math.isnan(state.history[0]["val_macro_f1"]) and math.isnan(state.history[0]["val_loss"])
    assert TrainingState.from_dict({"best_val_accuracy": -1.0}).best_score is None


def test_a_cost_cannot_choose_epochs():
    with pytest.raises(ConfigError, match="'train.objective.metric': tagging_ms_per_sentence is"):
        build(
            RunConfig,
            {"train": {"objective": {"metric": "tagging_ms_per_sentence", "mode": "min"}}},
        )


def test_epochs_report_throughput_and_gradient_norms(trained):
    _, _, result, _ = trained
    for epoch in result.history:
        assert epoch.tokens_per_second > 0 and epoch.epoch_seconds > 0
        assert epoch.grad_norm_first_lstm > 0 and epoch.grad_norm_last_lstm > 0


def test_same_seed_repeats_the_run_exactly(trained):
    config, prepared, result, _ = trained
    again = fit(config, prepared)
    assert [e.train_loss for e in again.history] == [e.train_loss for e in result.history]


def test_resumed_run_matches_a_straight_run(trained):
    config, prepared, result, states = trained
    resumed = fit(config, prepared, resume=states[2])
    assert [e.train_loss for e in resumed.history] == [e.train_loss for e in result.history]
    assert resumed.best_score == result.best_score


def replayed(history) -> list[dict]:
    return [{name: getattr(epoch, name) for name in REPLAYED_METRICS} for epoch in history]


@pytest.fixture(scope="module")
def with_dropout(tiny_config):
    model = replace(tiny_config.model, dropout=0.3, word_dropout=0.1)
    return fit_keeping_states(replace(tiny_config, model=model))


def test_a_run_with_dropout_resumed_from_disk_repeats_a_straight_one(with_dropout, tmp_path):
    """Dropout draws from torch's generator: the state on disk carries it, so the resumed
    epochs draw what the straight run drew, and log the same figures to the last digit."""
    config, prepared, result, states = with_dropout
    torch.save(states[1].to_dict(), tmp_path / "state.pt")
    saved = TrainingState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed = fit(config, prepared, resume=saved)
    assert replayed(resumed.history) == replayed(result.history)
    assert resumed.best_score == result.best_score and resumed.best_epoch == result.best_epoch
    # Without the generators' state (a checkpoint from before it was kept), the resumed
    # epochs draw other dropout masks from a fresh seed: what this test is there to catch.
    forgetful = fit(config, prepared, resume=replace(saved, rng_state={}))
    assert replayed(forgetful.history)[2:] != replayed(result.history)[2:]


@pytest.fixture(scope="module")
def averaged(tiny_config):
    return fit_keeping_states(
        replace(tiny_config, train=replace(tiny_config.train, ema_decay=0.99))
    )


def test_weight_averaging_trains_the_same_weights_and_ships_their_average(trained, averaged):
    _, _, plain, _ = trained
    _, prepared, result, _ = averaged
    # The average only watches: the training weights take the very same steps.
    assert [e.train_loss for e in result.history] == [e.train_loss for e in plain.history]
    assert [e.raw_val_accuracy for e in result.history] == [e.val_accuracy for e in plain.history]
    # Selection and the returned model are the average's, a model of its own.
    assert [e.val_accuracy for e in result.history] != [e.raw_val_accuracy for e in result.history]
    accuracies = [e.val_accuracy for e in result.history]
    assert result.best_score == max(accuracies)
    again = evaluate(result.model, prepared.splits["dev"], 64, torch.device("cpu"))
    assert again.accuracy == pytest.approx(result.best_score)


def test_an_averaged_run_resumes_exactly(averaged):
    config, prepared, result, states = averaged
    resumed = fit(config, prepared, resume=states[2])
    assert [e.val_accuracy for e in resumed.history] == [e.val_accuracy for e in result.history]
    assert resumed.best_score == result.best_score


@pytest.fixture(scope="module")
def swa(tiny_config):
    # 4 epochs from half-way: the training weights are shipped for epochs 1-2, the mean of
    # epochs 3.. from then on.
    train = replace(tiny_config.train, epochs=4, swa_start=0.5)
    return fit_keeping_states(replace(tiny_config, train=train))


def test_swa_ships_the_mean_of_the_epochs_after_its_start(trained, swa):
    _, _, plain, _ = trained
    config, prepared, result, states = swa
    # The mean only watches: the training weights take the very same steps.
    assert [e.train_loss for e in result.history] == [e.train_loss for e in plain.history][:4]
    before, after = result.history[:2], result.history[2:]
    assert [e.val_accuracy for e in before] == [e.raw_val_accuracy for e in before]
    assert after[-1].val_accuracy != after[-1].raw_val_accuracy
    # Epoch 4's selected weights are the plain mean of the training weights after 3 and 4.
    name = "embedding.weight"
    mean = (states[2].model_state[name] + states[3].model_state[name]) / 2
    assert torch.allclose(states[-1].average_state[f"module.{name}"], mean)
    best = max(e.val_accuracy for e in result.history)
    assert result.best_score == best
    again = evaluate(result.model, prepared.splits["dev"], 64, torch.device("cpu"))
    assert again.accuracy == pytest.approx(best)


def test_an_swa_run_resumes_exactly_before_and_after_its_start(swa):
    config, prepared, result, states = swa
    for state in (states[0], states[2]):
        resumed = fit(config, prepared, resume=state)
        assert [e.val_accuracy for e in resumed.history] == [e.val_accuracy for e in result.history]


def test_the_average_starts_as_a_mean_of_the_steps_so_far_then_decays_at_its_rate():
    weight = torch.nn.Parameter(torch.zeros(1))
    holder = torch.nn.Module()
    holder.weight = weight
    average = torch.optim.swa_utils.AveragedModel(holder, multi_avg_fn=warmed_up_ema(0.5))
    expected = None
    for n, value in enumerate([4.0, 8.0, 0.0, 2.0]):
        with torch.no_grad():
            weight.fill_(value)
        average.update_parameters(holder)
        # The first update copies; after n updates the decay is min(0.5, (1 + n) / (10 + n)).
        decay = min(0.5, (1 + n) / (10 + n))
        expected = value if expected is None else decay * expected + (1 - decay) * value
        assert average.module.weight.item() == pytest.approx(expected)


def test_a_training_state_saved_before_weight_averaging_still_loads(trained):
    _, _, _, states = trained
    saved = states[0].to_dict()
    for epoch in saved["history"]:
        del epoch["raw_val_accuracy"]
    del saved["average_state"]
    loaded = TrainingState.from_dict(saved)
    assert loaded.history[0]["raw_val_accuracy"] == loaded.history[0]["val_accuracy"]


def test_a_training_state_saved_as_ema_state_still_resumes(averaged):
    config, prepared, result, states = averaged
    saved = states[2].to_dict()
    saved["ema_state"] = saved.pop("average_state")
    resumed = fit(config, prepared, resume=TrainingState.from_dict(saved))
    assert [e.val_accuracy for e in resumed.history] == [e.val_accuracy for e in result.history]


def test_cosine_schedule_decays_the_lr_and_survives_a_resume(tiny_config):
    train = replace(tiny_config.train, epochs=4, lr_schedule="cosine")
    config, prepared, straight, states = fit_keeping_states(replace(tiny_config, train=train))
    rates = [state.optimizer_state["param_groups"][0]["lr"] for state in states]
    # After epoch e of E the rate is lr * (1 + cos(pi * e / E)) / 2, reaching 0 at the end.
    lr = config.train.lr
    assert rates == pytest.approx([lr * (1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3, 4)])
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    resumed = fit(config, prepared, resume=states[1])
    assert [e.train_loss for e in resumed.history] == [e.train_loss for e in straight.history]


def test_warm_up_raises_the_rate_to_lr_then_the_schedule_takes_over():
    config = TrainConfig(epochs=5, lr=1e-3, warmup_fraction=0.2, lr_schedule="cosine")
    assert learning_rate(config, 0.25) == pytest.approx(0.25e-3)
    assert learning_rate(config, 1.0) == pytest.approx(1e-3)
    # Cosine over the 4 epochs after the warm-up: half way at epoch 3, 0 at the end.
    assert learning_rate(config, 3.0) == pytest.approx(0.5e-3)
    assert learning_rate(config, 5.0) == pytest.approx(0.0, abs=1e-12)
    constant = replace(config, lr_schedule="constant")
    assert learning_rate(constant, 0.5) == pytest.approx(0.5e-3)
    assert learning_rate(constant, 4.5) == 1e-3


def test_a_warmed_up_run_resumes_exactly(tiny_config):
    train = replace(tiny_config.train, epochs=3, warmup_fraction=0.5, lr_schedule="cosine")
    config, prepared, straight, states = fit_keeping_states(replace(tiny_config, train=train))
    # Within the warm-up the rate climbs step by step: after epoch 1 it is 1/1.5 of lr.
    rate = states[0].optimizer_state["param_groups"][0]["lr"]
    assert rate == pytest.approx(config.train.lr / 1.5)
    resumed = fit(config, prepared, resume=states[0])
    assert [e.train_loss for e in resumed.history] == [e.train_loss for e in straight.history]


def test_two_sentences_are_learned_perfectly(tmp_path):
    path = tmp_path / "two.conllu"
    path.write_text(
        "1\tDogs\t_\t_\tNNS\t_\t_\t_\t_\t_\n2\tbark\t_\t_\tVBP\t_\t_\t_\t_\t_\n\n"
        "1\tThe\t_\t_\tDT\t_\t_\t_\t_\t_\n2\tbark\t_\t_\tNN\t_\t_\t_\t_\t_\n"
        "3\tfell\t_\t_\tVBD\t_\t_\t_\t_\t_\n"
    )
    config = RunConfig(
        data=DataConfig(train=str(path), dev=str(path), cache_dir=str(tmp_path / "cache")),
        model=ModelConfig(embedding_dim=16, hidden_size=16, num_layers=1, ff_dims=(16,)),
        train=TrainConfig(epochs=60, batch_size=2, lr=1e-2, device="cpu"),
    )
    # "bark" is a verb in one sentence and a noun in the other: context must decide.
    assert fit(config, datasets.load(config.data)).best_score == 1.0


def test_a_validation_tag_unseen_in_training_counts_as_wrong_and_out_of_the_loss(tmp_path):
    train = tmp_path / "train.conllu"
    train.write_text(
        "1\tDogs\t_\t_\tNNS\t_\t_\t_\t_\t_\n2\tbark\t_\t_\tVBP\t_\t_\t_\t_\t_\n\n"
        "1\tThe\t_\t_\tDT\t_\t_\t_\t_\t_\n2\tbark\t_\t_\tNN\t_\t_\t_\t_\t_\n"
        "3\tfell\t_\t_\tVBD\t_\t_\t_\t_\t_\n"
    )
    # The same sentences, and the first again with a tag the training data never had.
    dev = tmp_path / "dev.conllu"
    dev.write_text(
        train.read_text()
        + "\n1\tDogs\t_\t_\tNNS\t_\t_\t_\t_\t_\n2\tbark\t_\t_\tZZ\t_\t_\t_\t_\t_\n"
    )
    config = RunConfig(
        data=DataConfig(train=str(train), dev=str(dev), cache_dir=str(tmp_path / "cache")),
        model=ModelConfig(embedding_dim=16, hidden_size=16, num_layers=1, ff_dims=(16,)),
        train=TrainConfig(epochs=60, batch_size=2, lr=1e-2, device="cpu"),
    )
    result = fit(config, datasets.load(config.data))
    assert result.best_score == pytest.approx(6 / 7)
    assert all(math.isfinite(epoch.val_loss) for epoch in result.history)


def test_checkpoint_reloads_and_tags_the_same(trained, tmp_path):
    config, prepared, result, _ = trained
    path = save_checkpoint(tmp_path / "best.pt", result.model.state_dict(), config, prepared)
    loaded = load_checkpoint(path)
    assert loaded.config == config
    assert loaded.tags == prepared.tags.items
    before = evaluate(result.model, prepared.splits["test"], 64, torch.device("cpu"))
    after = evaluate(loaded.model, prepared.splits["test"], 64, torch.device("cpu"))
    assert after.accuracy == before.accuracy
    assert torch.equal(after.confusion, before.confusion)


def test_a_char_checkpoint_saved_before_several_kernel_widths_still_loads(tiny_config, tmp_path):
    model = replace(tiny_config.model, char_dim=8, char_filters=6, char_kernels=(3,))
    config = replace(tiny_config, model=model, train=replace(tiny_config.train, epochs=1))
    prepared = datasets.load(config.data)
    result = fit(config, prepared)
    path = save_checkpoint(tmp_path / "new.pt", result.model.state_dict(), config, prepared)
    # What the earlier postag wrote: one width, `char_kernel`, and one `chars.conv`.
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["char_kernel"] = payload["config"]["model"].pop("char_kernels")[0]
    payload["config"]["model"].pop("char_encoder")
    payload["model_state"] = {
        k.replace("chars.convs.0.", "chars.conv."): v for k, v in payload["model_state"].items()
    }
    torch.save(payload, tmp_path / "old.pt")
    old, new = load_checkpoint(tmp_path / "old.pt"), load_checkpoint(path)
    assert old.config == new.config
    test = prepared.splits["test"]
    before = evaluate(new.model, test, 64, torch.device("cpu"))
    after = evaluate(old.model, test, 64, torch.device("cpu"))
    assert torch.equal(after.confusion, before.confusion)


def test_max_batches_per_epoch_shrinks_steps_not_shape(tiny_config):
    prepared = datasets.load(tiny_config.data)
    config = replace(
        tiny_config, train=replace(tiny_config.train, epochs=1, max_batches_per_epoch=2)
    )
    result = fit(config, prepared)
    seen = result.history[0].tokens_per_second * result.history[0].epoch_seconds
    # Two batches of 16 sentences out of 600: a small share of the training tokens.
    assert 0 < seen < prepared.splits["train"].num_tokens / 5
    assert result.model.lstm.hidden_size == tiny_config.model.hidden_size


def test_every_model_option_trains_and_survives_a_checkpoint(tiny_config, ewt_slice, tmp_path):
    """Char encoder, dropout, residual stack, lowercased words and token-sized batches
    together; the reloaded tagger must look words up as training did to score the same."""
    model = replace(
        tiny_config.model,
        num_layers=3,
        residual=True,
        dropout=0.2,
        embedding_dropout=0.1,
        char_dim=8,
        char_filters=16,
        word_dropout=0.1,
        unknown_word_vector="zero",
    )
    config = replace(
        tiny_config,
        data=replace(tiny_config.data, lowercase_words=True, joint_columns=("upos", "feats")),
        model=model,
        train=replace(tiny_config.train, epochs=3, batch_tokens=800, label_smoothing=0.1),
    )
    prepared = datasets.load(config.data)
    result = fit(config, prepared)
    assert result.best_score > MAJORITY_TAG_RATE + 0.2

    assert set(result.model.joint_heads) == {"upos", "feats"}
    path = save_checkpoint(tmp_path / "best.pt", result.model.state_dict(), config, prepared)
    loaded = load_checkpoint(path)
    assert not loaded.model.joint_heads  # they trained the encoder; the tag is what ships
    assert loaded.chars == prepared.chars.items
    sentences = [list(s.words) for s in read_conllu(ewt_slice["dev"])]
    tagged = [tag for sentence in tag_sentences(loaded, sentences) for tag in sentence]
    gold = [tag for s in read_conllu(ewt_slice["dev"]) for tag in s.tags]
    matches = sum(t == g for t, g in zip(tagged, gold, strict=True))
    assert matches / len(gold) == pytest.approx(result.best_score)


def test_joint_heads_learn_their_columns_from_the_shared_encoder(tiny_config):
    config = replace(tiny_config, data=replace(tiny_config.data, joint_columns=("upos",)))
    prepared = datasets.load(config.data)
    result = fit(config, prepared)
    dev = prepared.splits["dev"]
    batch = collate(dev, np.arange(dev.num_sentences))
    with torch.no_grad():
        _, joint = result.model.eval().score_jointly(batch, torch.device("cpu"))
    gold = torch.from_numpy(dev.joint["upos"])
    # Sentences go in as the batch packs them: compare in that order.
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        batch.joint["upos"], batch.lengths, batch_first=True, enforce_sorted=False
    ).data
    assert sorted(packed.tolist()) == sorted(gold.tolist())
    upos_accuracy = (joint["upos"].argmax(dim=-1) == packed).float().mean().item()
    assert upos_accuracy > 0.6  # the most frequent UPOS (NOUN) is about 17%


def test_label_smoothing_trains_a_less_certain_tagger(tiny_config):
    """The same run (seed, batches) with and without smoothing: the smoothed tagger gives
    its chosen tag less probability on dev."""
    prepared = datasets.load(tiny_config.data)
    dev = prepared.splits["dev"]

    def confidence(label_smoothing: float) -> float:
        train = replace(tiny_config.train, epochs=2, label_smoothing=label_smoothing)
        model = fit(replace(tiny_config, train=train), prepared).model.eval()
        batch = collate(dev, np.arange(len(dev.lengths)), with_chars=False)
        with torch.no_grad():
            scores = model.score(batch, torch.device("cpu")).data
        return scores.softmax(dim=-1).amax(dim=-1).mean().item()

    plain, smoothed = confidence(0.0), confidence(0.3)
    assert smoothed < plain - 0.05, f"mean top probability {smoothed:.3f} against {plain:.3f}"


def test_mixed_precision_without_cuda_is_refused_not_ignored(tiny_config):
    config = replace(tiny_config, train=replace(tiny_config.train, mixed_precision=True))
    with pytest.raises(ConfigError, match="mixed_precision needs a CUDA device"):
        fit(config, datasets.load(config.data))


def test_a_loss_that_turns_nan_stops_training_naming_the_epoch(tiny_config):
    prepared = datasets.load(tiny_config.data)
    diverging = replace(tiny_config, train=replace(tiny_config.train, lr=1e30))
    epochs = []
    with pytest.raises(TrainingDiverged, match="epoch 1: the training loss is nan"):
        fit(diverging, prepared, callbacks=[lambda result, state: epochs.append(result)])
    assert epochs == []  # no callback ever saw the broken epoch


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_learns_like_float32(tiny_config):
    config = replace(tiny_config, train=replace(tiny_config.train, device="cuda"))
    prepared = datasets.load(config.data)
    full = fit(config, prepared)
    mixed = fit(replace(config, train=replace(config.train, mixed_precision=True)), prepared)
    assert mixed.history[-1].train_loss < mixed.history[0].train_loss / 2
    assert mixed.best_score == pytest.approx(full.best_score, abs=0.03)


@pytest.mark.gpu
def test_the_seeds_40_layer_stack_trains_an_epoch_of_ewt_on_cuda_and_its_gradient_vanishes(
    tmp_path,
):
    """The failing configuration at full size (40 x 256, the seed's shape, all of EWT train)."""
    config = RunConfig(
        data=DataConfig(cache_dir=str(tmp_path / "cache")),
        model=ModelConfig(embedding_dim=100, hidden_size=256, num_layers=40, ff_dims=(512, 256)),
        train=TrainConfig(epochs=1, batch_size=256, device="cuda", output_dir=str(tmp_path)),
    )
    (epoch,) = fit(config, datasets.load(config.data)).history
    assert epoch.grad_norm_first_lstm < 1e-6 * epoch.grad_norm_last_lstm
