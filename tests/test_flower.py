"""The Flower strategies (fedrobust.integrations.flower) on constructed client results: no
server, no network. Each strategy must give fedrobust.aggregators' bits on the same flattened
inputs, and Flower's own strategies' results where Flower has the rule."""
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MessageType, Metadata, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import strategy as legacy
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.serverapp import strategy as message_api

from fedrobust import aggregators, defenses
from fedrobust.integrations import flower

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
# (shape, dtype) per layer: one vector; a small conv net's layers with a 0-d one; mixed float32 /
# float64 (a float64 row); float64 only; float32 with an int64 counter (BatchNorm's batch count)
LAYOUTS = {
    "vector": [((12,), F32)],
    "conv": [((3, 2, 2), F32), ((3,), F32), ((4, 3), F32), ((), F32)],
    "mixed": [((5,), F32), ((2, 3), F64)],
    "float64": [((4, 4), F64), ((2,), F64)],
    "counter": [((6,), F32), ((), np.dtype(np.int64))],
}
RULES = [("mean", {}), ("median", {}), ("trimmed_mean", {"beta": 2}), ("krum", {"c": 2}),
         ("krum", {"c": 2, "multi": 3}), ("bulyan", {"c": 2})]
M = 11  # bulyan with c = 2 needs m >= 4c + 3


def client_models(layout, m=M, seed=0):
    """m clients' lists of layers: normal values around a common model (int layers: counts)."""
    rng = np.random.default_rng(seed)
    center = [rng.normal(size=shape) for shape, _ in layout]
    models = []
    for _ in range(m):
        layers = []
        for (shape, dtype), c in zip(layout, center):
            if dtype.kind == "i":
                layers.append(np.asarray(rng.integers(0, 100, size=shape), dtype=dtype))
            else:
                layers.append(np.asarray(c + 0.1 * rng.normal(size=shape), dtype=dtype))
        models.append(layers)
    return models


def flat(models):
    """The oracle's (m, d) rows: every layer raveled, float32 only when all layers are."""
    dtype = F32 if all(a.dtype == F32 for a in models[0]) else F64
    return np.stack([np.concatenate([np.asarray(a, dtype=dtype).ravel() for a in layers]) for layers in models])


def split(row, like):
    """A (d,) row cut into layers like `like` (int layers rounded)."""
    out, start = [], 0
    for a in like:
        part = row[start:start + a.size]
        start += a.size
        out.append((np.rint(part) if a.dtype.kind == "i" else part).astype(a.dtype).reshape(a.shape))
    return out


def assert_layers_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert np.array_equal(g, e)


# -- the legacy API: FitRes from ndarrays_to_parameters, fake ClientProxy objects ------------------
class FakeProxy(ClientProxy):
    """A ClientProxy that only carries its cid (the strategies never call a client)."""

    def get_properties(self, ins, timeout, group_id):
        raise NotImplementedError

    def get_parameters(self, ins, timeout, group_id):
        raise NotImplementedError

    def fit(self, ins, timeout, group_id):
        raise NotImplementedError

    def evaluate(self, ins, timeout, group_id):
        raise NotImplementedError

    def reconnect(self, ins, timeout, group_id):
        raise NotImplementedError


def fit_results(models, counts):
    return [(FakeProxy(f"c{i}"), FitRes(status=Status(code=Code.OK, message=""),
                                        parameters=ndarrays_to_parameters(layers), num_examples=int(n),
                                        metrics={"loss": float(i)}))
            for i, (layers, n) in enumerate(zip(models, counts))]


def legacy_aggregate(strategy, models, counts):
    parameters, metrics = strategy.aggregate_fit(1, fit_results(models, counts), [])
    return parameters_to_ndarrays(parameters), metrics


# -- the Message API: replies with an ArrayRecord and a MetricRecord ------------------------------
NODES = [2**63 + 17 * i for i in range(M)]  # node ids are uint64: also beyond the int64 range


def replies(models, counts, nodes=NODES):
    """Train replies from `nodes`; metadata given directly (a reply built with reply_to needs an
    instruction message, which needs a running Flower app's identity)."""
    out = []
    for i, (layers, n, node) in enumerate(zip(models, counts, nodes)):
        content = RecordDict({"arrays": ArrayRecord([np.array(a) for a in layers]),
                              "metrics": MetricRecord({"num-examples": int(n), "loss": float(i)})})
        metadata = Metadata(run_id=1, message_id=f"m{i}", src_node_id=node, dst_node_id=0, reply_to_message_id="",
                            group_id="1", created_at=time.time(), ttl=3600.0, message_type=MessageType.TRAIN)
        out.append(Message(content=content, metadata=metadata))
    return out


def message_aggregate(strategy, models, counts, nodes=NODES):
    arrays, metrics = strategy.aggregate_train(1, replies(models, counts, nodes))
    return arrays.to_numpy_ndarrays(), metrics


APIS = {
    "message": (flower.FedrobustStrategy, message_aggregate),
    "legacy": (flower.LegacyFedrobustStrategy, legacy_aggregate),
}


def counts_of(m, seed=1):
    return np.random.default_rng(seed).integers(10, 500, size=m)


# -- equal to fedrobust.aggregators ---------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rule,params", RULES, ids=[f"{r}{p}" for r, p in RULES])
def test_each_strategy_gives_the_rules_bits_on_the_flattened_models(api, layout, rule, params):
    Strategy, aggregate = APIS[api]
    models = client_models(LAYOUTS[layout])
    # the robust rules ignore the example counts, and so does the unweighted mean
    got, metrics = aggregate(Strategy(rule, params, weighted=False), models, counts_of(M))
    expected = aggregators.get(rule, **params)(flat(models))
    assert_layers_equal(got, split(expected, models[0]))
    if rule in ("krum", "bulyan"):
        chosen = aggregators.rule(rule).select(flat(models), **params)[1]
        assert metrics["fedrobust-selected-count"] == len(chosen)
        assert metrics["fedrobust-rejected-count"] == M - len(chosen)


@pytest.mark.parametrize("api", APIS)
def test_the_weighted_mean_is_fedavgs_example_weighted_mean(api):
    Strategy, aggregate = APIS[api]
    models, counts = client_models(LAYOUTS["conv"]), counts_of(M)
    got, _ = aggregate(Strategy("mean"), models, counts)
    U = flat(models).astype(np.float64)
    assert_layers_equal(got, split(flower.weighted_mean(flat(models), counts), models[0]))
    for g, e in zip(got, split((counts[:, None] * U).sum(0) / counts.sum(), models[0])):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)
    # Flower's FedAvg: the same weighted mean, summed in another order (float32 products)
    if api == "legacy":
        theirs, _ = legacy_aggregate(their(legacy, "FedAvg"), models, counts)
    else:
        theirs, _ = message_aggregate(their(message_api, "FedAvg"), models, counts)
    for g, t in zip(got, theirs):
        assert g.dtype == t.dtype
        np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-6)


# -- equal to Flower's own strategies -------------------------------------------------------------
def their(module, name, **options):
    """Flower's strategy `name` of `module`; skip where this Flower lacks it (the Message API
    strategies other than FedAvg came after 1.21)."""
    if not hasattr(module, name):
        pytest.skip(f"this Flower has no {module.__name__}.{name}")
    return getattr(module, name)(**options)


def theirs_and_ours(api, legacy_strategy, message_strategy, rule, params, models, counts):
    if api == "legacy":
        theirs = legacy_aggregate(legacy_strategy(), models, counts)[0]
    else:  # FedMedian and FedTrimmedAvg pop the arrays out of the replies: fresh replies for each
        theirs = message_aggregate(message_strategy(), models, counts)[0]
    ours = APIS[api][1](APIS[api][0](rule, params), models, counts)[0]
    return theirs, ours


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("layout", ["conv", "mixed"])
@pytest.mark.parametrize("m", [11, 10])
def test_median_equals_fedmedian(api, layout, m):
    # even m: numpy's (a + b) / 2 and fedrobust's a/2 + b/2 round alike (halving is exact)
    models = client_models(LAYOUTS[layout], m=m)
    theirs, ours = theirs_and_ours(api, lambda: their(legacy, "FedMedian"),
                                   lambda: their(message_api, "FedMedian"), "median", {}, models, counts_of(m))
    assert_layers_equal(ours, theirs)


@pytest.mark.parametrize("api", APIS)
def test_trimmed_mean_equals_fedtrimmedavg_with_beta_mapped_from_a_fraction(api):
    # Flower's beta is the fraction cut at EACH end: int(beta * m) values; fedrobust's is that count
    m, fraction = 10, 0.25
    models = client_models(LAYOUTS["conv"], m=m)
    theirs, ours = theirs_and_ours(api, lambda: their(legacy, "FedTrimmedAvg", beta=fraction),
                                   lambda: their(message_api, "FedTrimmedAvg", beta=fraction),
                                   "trimmed_mean", {"beta": int(fraction * m)}, models, counts_of(m))
    for o, t in zip(ours, theirs):  # the same values, summed in another order
        assert o.dtype == t.dtype
        np.testing.assert_allclose(o, t, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("api", APIS)
def test_krum_equals_flowers_krum(api):
    # Flower's Krum: squared distances, scores over the m - f - 2 nearest (f: num_malicious), the
    # row itself returned: fedrobust's krum(c = f, squared=True), bit for bit
    models = client_models(LAYOUTS["conv"])
    theirs, ours = theirs_and_ours(api, lambda: their(legacy, "Krum", num_malicious_clients=2, num_clients_to_keep=0),
                                   lambda: their(message_api, "Krum", num_malicious_nodes=2), "krum", {"c": 2},
                                   models, counts_of(M))
    assert_layers_equal(ours, theirs)


@pytest.mark.parametrize("api", APIS)
def test_multi_krum_selects_as_flower_and_averages_without_weights(api):
    # Flower's Multi-Krum takes the example-weighted mean of the rows it selects, fedrobust's the
    # plain mean: equal for equal counts (up to summation order)
    models, counts = client_models(LAYOUTS["vector"]), np.full(M, 50)
    theirs, ours = theirs_and_ours(api, lambda: their(legacy, "Krum", num_malicious_clients=2, num_clients_to_keep=3),
                                   lambda: their(message_api, "MultiKrum", num_malicious_nodes=2,
                                                 num_nodes_to_select=3),
                                   "krum", {"c": 2, "multi": 3}, models, counts)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-6, atol=1e-7)


def test_bulyan_equals_flowers_legacy_bulyan():
    # Flower's legacy Bulyan: Krum applied repeatedly to the rows not yet selected (as fedrobust),
    # then per coordinate the mean of the theta - 2f values closest to the median. Its Krum scores
    # use max(1, n - f - 2) neighbours, fedrobust's n - f - 2: they differ only at n - f - 2 = 0,
    # which the last selection reaches (n = 2f + 1 rows left) for f = 1; here f = 2.
    models = client_models(LAYOUTS["conv"])
    theirs = legacy_aggregate(their(legacy, "Bulyan", num_malicious_clients=2, to_keep=0), models, counts_of(M))[0]
    ours = legacy_aggregate(flower.LegacyFedrobustStrategy("bulyan", {"c": 2}), models, counts_of(M))[0]
    for o, t in zip(ours, theirs):  # the same values, summed in another order
        np.testing.assert_allclose(o, t, rtol=1e-6, atol=1e-7)


def test_bulyan_equals_flowers_message_api_bulyan_where_they_select_alike():
    # The Message API's Bulyan selects its theta = m - 2f rows by ONE Krum pass (the theta best
    # scores), fedrobust (after El Mhamdi et al.) by Krum applied repeatedly to the rows left: the
    # selections can differ on spread-out rows. On 9 clustered clients and 6 outliers, each far
    # off along its own axis, both select the 9 (f = 3: every Krum step scores >= 2 neighbours,
    # the outliers are twice as far from each other as from the cluster), and the second stages
    # agree.
    m, c, far = 15, 3, 100.0
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(m, 10)).astype(np.float32)
    outliers = [1, 4, 6, 9, 12, 13]
    for axis, i in enumerate(outliers):
        rows[i] = 0
        rows[i, axis] = far
    models = [[r[:6].reshape(3, 2), r[6:]] for r in rows]
    honest = [i for i in range(m) if i not in outliers]
    nodes = list(range(100, 100 + m))
    theirs = message_aggregate(their(message_api, "Bulyan", num_malicious_nodes=c), models, counts_of(m), nodes)[0]
    ours, metrics = message_aggregate(flower.FedrobustStrategy("bulyan", {"c": c}), models, counts_of(m), nodes)
    assert sorted(metrics["fedrobust-selected-ids"]) == [nodes[i] for i in honest]
    assert_layers_equal(ours, split(aggregators.bulyan(rows, c), models[0]))
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-6, atol=1e-7)


# -- defenses -------------------------------------------------------------------------------------
def configure(strategy, global_layers, monkeypatch):
    """Let Flower configure a round with the global model `global_layers`: the strategy records it.
    Message API: the parent FedAvg.configure_train is stubbed out (its instruction messages need
    a running Flower app); legacy: Flower's SimpleClientManager with fake clients."""
    if isinstance(strategy, flower.FedrobustStrategy):
        monkeypatch.setattr(message_api.FedAvg, "configure_train", lambda self, *args: [])
        assert strategy.configure_train(1, ArrayRecord([np.array(a) for a in global_layers]), ConfigRecord(),
                                        None) == []
    else:
        manager = SimpleClientManager()
        for i in range(M):
            manager.register(FakeProxy(f"c{i}"))
        assert len(strategy.configure_fit(1, ndarrays_to_parameters(global_layers), manager)) == M


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("defense", ["err", "lfr", "union"])
@pytest.mark.parametrize("rule,params", [("mean", {}), ("trimmed_mean", {"beta": 1}), ("krum", {"c": 1})])
def test_a_defense_removes_clients_by_their_impact_and_the_rule_aggregates_the_rest(api, defense, rule, params,
                                                                                     monkeypatch):
    Strategy, aggregate = APIS[api]
    models, counts = client_models(LAYOUTS["conv"]), counts_of(M)
    models[5] = [a + 3.0 for a in models[5]]  # one client moved far off
    global_layers = [np.full_like(a, 0.5) for a in models[0]]  # updates are taken relative to it
    U, w = flat(models), flat([global_layers])[0]
    target = np.delete(U, 5, axis=0).astype(np.float64).mean(0)  # the others' mean: the best model
    seen = []

    def evaluate(candidates):
        seen.append(candidates.shape)
        assert [a.shape for a in strategy.layout.restore(candidates[0])] == [a.shape for a in global_layers]
        distance = np.linalg.norm(candidates.astype(np.float64) - target, axis=1)
        return distance, distance ** 2

    strategy = Strategy(rule, params, defense=defense, defense_c=1, evaluate=evaluate)
    configure(strategy, global_layers, monkeypatch)
    got, metrics = aggregate(strategy, models, counts)
    assert seen == [(M + 1, U.shape[1])]  # one batched evaluation: [w + A; w + B_1; ...]
    # the defense on the updates U - w around w, then the rule on the kept clients' models
    found = defenses.defend(defense, U - w, w, rule, params, 1, evaluate)
    kept = found.kept
    expected = flower.weighted_mean(U[kept], counts[kept]) if rule == "mean" else \
        aggregators.get(rule, **params)(U[kept])
    assert_layers_equal(got, split(expected, models[0]))
    ids = NODES if api == "message" else [f"c{i}" for i in range(M)]
    as_metric = (lambda xs: xs) if api == "message" else (lambda xs: ",".join(xs))
    assert metrics["fedrobust-removed-count"] == 1
    assert metrics["fedrobust-removed-ids"] == as_metric([ids[i] for i in found.removed])
    if rule == "mean":  # the far-off client moves the mean most
        assert found.removed.tolist() == [5]
        assert metrics["fedrobust-selected-ids"] == as_metric([ids[i] for i in range(M) if i != 5])
        assert metrics["fedrobust-rejected-ids"] == as_metric([ids[5]])
        assert (metrics["fedrobust-selected-count"], metrics["fedrobust-rejected-count"]) == (M - 1, 1)


@pytest.mark.parametrize("api", APIS)
def test_a_defense_needs_evaluate_and_the_global_model(api):
    Strategy, aggregate = APIS[api]
    with pytest.raises(ValueError, match=r"defense 'union' needs evaluate\(models\)"):
        Strategy("median", defense="union", defense_c=1)
    with pytest.raises(ValueError, match="needs defense_c"):
        Strategy("median", defense="err", evaluate=lambda models: (None, None))
    with pytest.raises(ValueError, match="defense must be one of"):
        Strategy("median", defense="krum", defense_c=1, evaluate=lambda models: (None, None))
    strategy = Strategy("krum", {"c": 1}, defense="err", evaluate=lambda models: (None, None))
    assert strategy.aggregation.defense_c == 1  # the rule's c
    with pytest.raises(ValueError, match="needs the current global model"):  # no round configured
        aggregate(strategy, client_models(LAYOUTS["vector"]), counts_of(M))


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_clients_whose_layers_differ_are_named(api):
    Strategy, aggregate = APIS[api]
    name = (lambda i: f"client {NODES[i]}") if api == "message" else (lambda i: f"client c{i}")
    models = client_models(LAYOUTS["conv"])
    models[3] = [models[3][0].reshape(3, 4), *models[3][1:]]
    with pytest.raises(ValueError, match=rf"{name(3)} has layer 0 of shape \(3, 4\) and dtype float32; the first "
                                         r"client's is of shape \(3, 2, 2\)"):
        aggregate(Strategy("median"), models, counts_of(M))
    models = client_models(LAYOUTS["conv"])
    models[7] = models[7][:-1]
    fewer = "sent arrays \\['0', '1', '2'\\]; the first client sent" if api == "message" else \
        "has 3 layers; the first client has 4"  # Message API: the ArrayRecord keys differ
    with pytest.raises(ValueError, match=f"{name(7)} {fewer}"):
        aggregate(Strategy("median"), models, counts_of(M))
    models = client_models(LAYOUTS["conv"])
    models[2] = [a.astype(np.float64) for a in models[2]]
    with pytest.raises(ValueError, match=f"{name(2)} has layer 0 of shape .* and dtype float64"):
        aggregate(Strategy("median"), models, counts_of(M))


def test_unknown_rules_and_parameters_are_refused_at_construction():
    with pytest.raises(ValueError, match="unknown aggregation rule 'fedavg'"):
        flower.FedrobustStrategy("fedavg")
    with pytest.raises(TypeError, match=r"rule 'trimmed_mean' needs parameter\(s\) \['beta'\]"):
        flower.LegacyFedrobustStrategy("trimmed_mean")
    with pytest.raises(TypeError, match="unknown parameter"):
        flower.FedrobustStrategy("median", {"beta": 1})


def test_replies_with_errors_are_skipped_and_bad_replies_named():
    models, counts = client_models(LAYOUTS["vector"], m=5), counts_of(5)
    strategy = flower.FedrobustStrategy("median")
    assert strategy.aggregate_train(1, []) == (None, None)
    some = replies(models, counts)
    some[1] = Message(error=Error(code=1, reason="lost"), metadata=some[1].metadata)
    arrays, metrics = strategy.aggregate_train(1, some)
    assert_layers_equal(arrays.to_numpy_ndarrays(), split(aggregators.median(flat(models)[[0, 2, 3, 4]]), models[0]))
    assert metrics["fedrobust-selected-ids"] == [NODES[i] for i in (0, 2, 3, 4)]
    bad = replies(models, counts)
    del bad[2].content["metrics"]
    with pytest.raises(ValueError, match=f"client {NODES[2]} replied with 1 ArrayRecords and 0 MetricRecords"):
        strategy.aggregate_train(1, bad)
    bad = replies(models, counts)
    bad[4].content["metrics"] = MetricRecord({"loss": 1.0})
    with pytest.raises(ValueError, match=f"client {NODES[4]} replied without a number 'num-examples'"):
        strategy.aggregate_train(1, bad)


# -- metrics --------------------------------------------------------------------------------------
def test_krum_reports_the_selected_and_rejected_clients_and_aggregates_their_metrics():
    models, counts = client_models(LAYOUTS["conv"]), counts_of(M)
    U = flat(models)
    chosen = aggregators.krum_select(U, 2, multi=3).tolist()
    others = [i for i in range(M) if i not in chosen]
    arrays, metrics = flower.FedrobustStrategy("krum", {"c": 2, "multi": 3}).aggregate_train(1, replies(models, counts))
    assert metrics["fedrobust-selected-ids"] == [NODES[i] for i in chosen]  # in selection order
    assert metrics["fedrobust-rejected-ids"] == [NODES[i] for i in others]
    assert (metrics["fedrobust-selected-count"], metrics["fedrobust-rejected-count"]) == (3, M - 3)
    assert "fedrobust-removed-count" not in metrics  # no defense
    # Flower's metric aggregation over the selected clients only ("loss" of client i is i)
    np.testing.assert_allclose(metrics["loss"], np.average(chosen, weights=counts[chosen]))
    MetricRecord(dict(metrics))  # valid MetricRecord values: ints and lists of ints

    seen = []
    strategy = flower.LegacyFedrobustStrategy("krum", {"c": 2, "multi": 3},
                                              fit_metrics_aggregation_fn=lambda fit: seen.extend(fit) or {"n": 1})
    _, metrics = legacy_aggregate(strategy, models, counts)
    assert [m["loss"] for _, m in seen] == [float(i) for i in chosen]
    assert metrics == {"n": 1,
                       "fedrobust-selected-count": 3, "fedrobust-selected-ids": ",".join(f"c{i}" for i in chosen),
                       "fedrobust-rejected-count": M - 3, "fedrobust-rejected-ids": ",".join(f"c{i}" for i in others)}


def test_too_few_clients_lower_the_rules_counts():
    models, counts = client_models(LAYOUTS["vector"], m=5), counts_of(5)  # krum c = 2 needs m > 6
    got, _ = legacy_aggregate(flower.LegacyFedrobustStrategy("krum", {"c": 2}), models, counts)
    assert_layers_equal(got, split(aggregators.krum(flat(models), 1), models[0]))


def test_legacy_failures_follow_accept_failures():
    models, counts = client_models(LAYOUTS["vector"], m=5), counts_of(5)
    strategy = flower.LegacyFedrobustStrategy("median", accept_failures=False)
    assert strategy.aggregate_fit(1, fit_results(models, counts), [RuntimeError("lost")]) == (None, {})
    assert strategy.aggregate_fit(1, [], []) == (None, {})


# -- packaging ------------------------------------------------------------------------------------
def test_fedrobust_does_not_import_flower_and_the_adapter_names_the_extra(tmp_path):
    code = ("import sys, fedrobust, fedrobust.integrations; assert 'flwr' not in sys.modules; "
            "sys.modules['flwr'] = None\n"
            "try:\n    import fedrobust.integrations.flower\nexcept ImportError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pip install 'fedrobust[flower]'" in done.stdout
