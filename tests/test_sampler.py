"""The training batch sampler: epoch order, rank sharding, resume offsets."""
from zoo.engine.sampler import TrainBatchSampler


def test_epochs_cover_dataset_and_encode_epoch():
    s = TrainBatchSampler(10, batch_size=3, total_iters=6, seed=1)
    batches = list(s)
    assert len(batches) == 6 == len(s)
    first, second = batches[:3], batches[3:]
    flat1 = [i for b in first for i in b]
    flat2 = [i for b in second for i in b]
    assert len(set(flat1)) == 9 and all(0 <= i < 10 for i in flat1)
    assert all(10 <= i < 20 for i in flat2)           # epoch 1 encoded as 10 + i
    assert [i % 10 for i in flat1] != [i % 10 for i in flat2]


def test_resume_continues_the_same_sequence():
    full = list(TrainBatchSampler(10, 3, 8, seed=5))
    resumed = list(TrainBatchSampler(10, 3, 8, start_iter=4, seed=5))
    assert resumed == full[4:]


def test_ranks_are_disjoint_within_an_epoch():
    a = [i for b in TrainBatchSampler(8, 2, 2, seed=0, rank=0, world_size=2) for i in b]
    b = [i for b in TrainBatchSampler(8, 2, 2, seed=0, rank=1, world_size=2) for i in b]
    assert not set(a) & set(b) and len(a) == len(b) == 4
