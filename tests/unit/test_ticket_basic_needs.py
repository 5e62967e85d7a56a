"""Basic living affected (P2): the home without water, power or gas, sewage backing
up, the only toilet unusable, the lift out for someone high up, a front door that
will not lock; and the look-alikes that are ordinary repairs."""

from __future__ import annotations

import pytest

from callcenter.tickets.judge import judge
from callcenter.tickets.safety import read_basic_needs


@pytest.mark.parametrize(
    ("text", "need"),
    [
        ("我家从早上开始一滴水都没有，做饭都做不了", "no_water"),
        ("屋 里 停 水 了 到 现在 还 没 来", "no_water"),
        ("家里突然停电了，冰箱也不转了", "no_power"),
        ("总闸一推上去就跳，推了好几回，屋里啥电器都用不了", "no_power"),
        ("天然气停了，灶打不着，饭还没做", "no_gas"),
        ("卫生间地漏往上冒脏水，臭得进不去", "sewage"),
        ("我们家就一个厕所，马桶堵死了", "only_toilet"),
        ("电梯坏了一整天，我住二十六楼，腿脚不好下不去", "lift_out"),
        ("我家防盗门锁舌弹不出来，门锁不上", "front_door"),
    ],
)
def test_basic_needs_found(text: str, need: str) -> None:
    reading = read_basic_needs(text)
    assert need in reading.hazards, reading.hits


@pytest.mark.parametrize(
    "text",
    [
        "楼道的灯坏了，晚上黑漆漆的",  # a shared lamp, not the home's power
        "厨房那一个插座没电了，其他都好好的",  # one socket: an ordinary repair
        "消防栓里面没有水，是不是该检查一下",  # not the home's water
        "不是停水，就是水压有点小",  # negated
        "电梯坏了，不过我住二楼，走楼梯就行",  # low floor
        "单元门关不上了，风一吹就开",  # the shared unit door, not the home's
        "上个月停电那次已经修好了，我想问问电费怎么算",  # over
        "明天停水是全天都停吗，我家老人要做饭",  # tomorrow's stop: a question
        "楼下贴的纸说下周二要停气，停多久",  # the same for gas
        "地漏这两天一直往上返臭味，水下得挺快",  # a smell, not sewage
        "看到公告说电梯要停两天做年检，我住十八楼",  # a planned stop, announced
        "电梯到九楼停下来，门口有个台阶",  # 停下来: it stops, as lifts do
        "单元里两台电梯坏了一台，另一台还能用，我住二十一楼，就是等得久",  # the other runs
        "墙根一直潮，但是没有水往下淌",  # no water running, not no water
        "我在家等到下午，师傅都没来电话",  # 没来电话 is no phone call
        "早上车在地库打不着火",  # a car, not the cooker
        "燃气灶左边那个眼儿打不着火了，右边那个还能用",  # one burner, the gas is there
        "中午突然停电，冰箱里东西都化了，现在是来电了，可你们得给个说法",  # back now
        "昨晚整栋楼没水，一直到半夜，现在有水了，就是想问问怎么回事",  # back now
    ],
)
def test_look_alikes_are_not_basic_needs(text: str) -> None:
    assert not read_basic_needs(text).is_p1, read_basic_needs(text).hits


def test_a_basic_need_raises_an_ordinary_report_to_p2() -> None:
    judged = judge("你好，我们家停电了，一屋子黑，三号楼二单元501", "1")
    assert judged.urgency == "P2"
    assert any(e.startswith("basic need no_power") for e in judged.evidence["urgency"])


def test_a_home_with_every_radiator_cold_is_a_basic_need() -> None:
    assert "no_heating" in read_basic_needs("家里暖气片全都是凉的，屋里才十一度").hazards
    assert "no_heating" in read_basic_needs("地 暖 一 点 温 度 都 没 有 了").hazards
    # One radiator lukewarm is an ordinary repair.
    assert not read_basic_needs("卧室那组暖气片上面有点不热，可能要放气").is_p1
