"""Safety hazards (P1, recall first): hedges count, negations, hypothetical questions,
dangers already over and look-alikes do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.tickets.safety import load_rules, read_safety


@pytest.mark.parametrize(
    ("text", "hazard"),
    [
        ("屋里一股臭鸡蛋的味道，是不是燃气", "gas"),
        ("好像有点煤气味，也说不准是不是我闻错了", "gas"),
        ("那个灶台底下嘶嘶的响，天然气漏了吧", "gas"),
        ("楼道里头好大的烟，呛得人眼睛都睁不开", "fire"),
        ("插座那边噼啪冒火星子", "fire"),
        ("卫生间墙里的管子崩了，水哗哗的往外喷", "flood"),
        ("楼上灌下来的水顺着吊灯往下流", "flood"),
        ("我爸被关在电梯里面出不来了", "lift_trapped"),
        ("电梯卡在七楼和八楼中间，里面有个小孩", "lift_trapped"),
        ("有人从楼上往下扔酒瓶子，差点砸到老太太", "falling_object"),
        ("外墙的瓷砖掉下来好几块，就落在人行道上", "falling_object"),
        ("配电箱那根电线耷拉下来泡在水里", "live_wire"),
        ("我摸了一下水龙头被电了一下", "live_wire"),
        ("台阶那块烂了，我妈摔了一跤腿流血了", "injury"),
        ("阳台的栏杆松了晃得厉害，孩子老在那趴着", "structure"),
        ("大风把门口那棵大树刮倒了，横在路上", "tree_down"),
        ("电 梯 困 人 了 快 来 人", "lift_trapped"),  # recognised speech: spaces
        ("没 起 味 好 大", "gas"),  # 煤气 misheard as 没起
        ("整栋楼里烟越来越大，我们下不去", "fire"),
        ("我们俩被困在这个铁盒子里头，不上不下的，按啥都没反应", "lift_trapped"),
        ("那条大狗又没拴，刚才扑上来把我孙子咬了", "dog_attack"),
        ("地下车库进水了，水都到膝盖了，还有人在里面挪车", "deep_water"),
        ("电梯门老夹人，今天又把一个小孩的胳膊夹了", "lift_fault"),
        ("楼道的消火栓箱打开是空的，水带水枪都没了", "safety_equipment"),
        ("消防通道让车堵死了，救护车进不来，楼上老人脑梗了", "injury"),
        ("对门大爷胸口疼，他老伴打的120", "injury"),
    ],
)
def test_hazards_make_p1(text: str, hazard: str) -> None:
    reading = read_safety(text)
    assert reading.is_p1, reading.hits
    assert hazard in reading.hazards


@pytest.mark.parametrize(
    "text",
    [
        "要是电梯困人了，应该打哪个电话？",
        "如果半夜闻到煤气味怎么办呢",
        "没有漏气，就是燃气表的读数不对，想问一下",
        "上个月那个水管爆了的事已经修好了，我就问下维修费谁出",
        "楼道里老有人抽烟，烟味很大",
        "厨房窗户的把手掉下来了",
        "水龙头有点滴水，关不太紧",
        "物业费怎么交啊，能不能微信付",
        "楼梯间堆满了纸箱子，我怕哪天着火了跑不出去",  # feared, not happening
        "单元门的刷卡器被人砸烂了，刷不了卡",  # vandalism, nothing falling
        "草坪边上的取水龙头断了，水一直往外冒",  # a garden tap, not a flood
        "水槽下面的管子脱了，水漏到柜子里了",  # a loose drain hose
        "有辆车的报警器一直响，吵得睡不着",  # a car alarm, not a gas alarm
        "明天消防演练要放烟雾，我家孩子有哮喘，会不会飘进来",  # a drill, not a fire
        "两天前我在台阶上摔骨折了，打了石膏，你们台阶上的冰也不扫",  # treated, past
        "我妈摔伤了，现在住院了，就是那段楼梯的灯一直不亮",  # in care now
        "上个月被狗咬了一口，疫苗打完了，想问问医药费找谁要",  # past, the dog not said loose
        "对门的狗老冲人叫，她说狗不咬人，可我还是怕",  # negated
        "我家那个灭火器过期了，压力表指到红的了，扔哪里",  # the household's own
        "淋浴房下水慢，洗个澡脚下的水能积到脚脖子",  # ankle-deep: a slow drain
    ],
)
def test_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_a_negation_inside_a_hit_cancels_only_the_danger_word_it_negates() -> None:
    # The danger word itself is negated, inside a hit that spans several words.
    for calm in ("插座都好好的，没冒烟也没火花，就是灯不亮",
                 "路灯杆被车蹭歪了，电线都在杆子里没露出来",
                 "燃气报警器我想问问要是响了该怎么办"):
        reading = read_safety(calm)
        assert not reading.is_p1 and reading.doubtful, reading.hits
    # A 不 that is part of the danger word, one after it, or half of a question.
    for danger, hazard in (("水管爆了，水往外喷，关都关不住", "flood"),
                           ("大树倒了压在路上，车过不去人也过不去", "tree_down"),
                           ("屋里有没起味，很冲", "gas")):  # 煤气 misheard as 没起
        assert hazard in read_safety(danger).hazards, read_safety(danger).hits


def test_cancelled_danger_asks_the_agent_but_look_alikes_do_not() -> None:
    assert read_safety("要是电梯困人了找谁？").doubtful
    assert not read_safety("楼道里有人抽烟，烟味很大").doubtful
    assert not read_safety("物业费怎么交").doubtful


def test_someone_missing_or_a_wire_left_bare_is_p1() -> None:
    assert "missing_person" in read_safety("我父亲有老年痴呆，一个小时前出门就不见了").hazards
    assert "live_wire" in read_safety("开关盒没装盖子，几根电线就露着，孩子够得着").hazards


def test_a_past_danger_told_at_length_stays_past() -> None:
    reading = read_safety("上个月楼上水管爆了，水灌进我家，地板全泡了，我想问问赔偿怎么算")
    assert not reading.is_p1 and reading.doubtful, reading.hits
    assert read_safety("上个月水管爆了，修好了，今天又爆了，水灌进我家").is_p1


def test_a_danger_back_again_is_not_over() -> None:
    assert read_safety("上次煤气漏的事修好了，今天又闻到煤气味了").is_p1


def test_a_smell_gone_and_an_injured_person_in_hospital_are_over() -> None:
    assert not read_safety("上个礼拜六夜里灶间有点煤气味道，叫了燃气公司来换了软管，"
                           "现在一点味道也没有了").is_p1
    assert not read_safety("我爸在台阶上滑倒了，手腕骨折，打了钢板，现在还在医院住着").is_p1
    assert read_safety("我爸在台阶上滑倒了，手腕骨折，现在还在地上躺着").is_p1


def test_an_injury_years_ago_is_over_whatever_it_left() -> None:
    # What goes on since (一直在轮椅上) is the lasting disability, not the injury.
    assert not read_safety("我儿子坐轮椅的，小时候脊髓受伤，一直在轮椅上").is_p1
    assert read_safety("我儿子坐轮椅的，刚才摔下来受伤了，一直在流血").is_p1


def test_hammering_told_as_a_sound_that_smashes_is_no_falling_object() -> None:
    assert not read_safety("楼上装修的七点不到就开始咣咣砸，我孩子都被吵醒了").is_p1
    # Bangs are also how falling things are heard.
    assert read_safety("楼顶上那个砖头一直往下掉，叮叮咣咣的，俺家娃差一点就给砸着了").is_p1


def test_out_of_the_lift_already_is_over_though_it_was_just_now() -> None:
    assert not read_safety("电梯刚才把我关里头了，没有没有，已经出来了，人没事").is_p1
    assert read_safety("电梯刚才把我关里头了，现在还在里面出不来").is_p1


def test_smoke_smell_on_clothes_or_a_fire_in_the_news_is_no_fire() -> None:
    assert not read_safety("平台上天天一地烟头，肯定是楼上哪个男的抽的，我家衣服上都是烟味").is_p1
    assert not read_safety("有人在楼道给电动车充电，新闻上电动车着火的事那么多").is_p1
    assert read_safety("楼道里全是烟，呛得不行").is_p1


def test_a_dry_stain_by_a_socket_or_an_inlet_valve_is_no_water_danger() -> None:
    assert not read_safety("卧室墙上有一块水印子，就在插座旁边，现在摸着是干的").is_p1
    assert not read_safety("厨房上面往下滴水，插座那面墙是干的，离插座都远").is_p1
    assert not read_safety("热水器底下在滴水，我把电源拔了，进水阀也关了").doubtful
    assert read_safety("楼上漏水，水顺着墙流到插座里了").is_p1


@pytest.mark.parametrize(
    "text",
    [
        # A lift nobody is in (没人困在里面).
        "整个单元电梯一台都下不来，两台都不动，没有，没人困在里面，我问了",
        # 让人砸, 叫人给砸: done by a person, as 被人砸 is.
        "我那车昨儿晚上副驾那块玻璃让人砸了，包里的钱全没了",
        # A past danger the caller says is gone today.
        "昨天下午我在楼下走上面掉下来一个花盆啪一下就砸在我脚边上，今天没有了，就昨天那一下",
        # Regional words: 木有 (没有), 夜儿个 and 琴日 (昨天), 冇事啦 (没事了).
        "消防通道天天有人停车，也木有着火啥的，俺就是寻思万一有个事儿",
        "夜儿个刮大风额们楼前头那个树倒咧，么有么有，么砸着人也么砸着车",
        "琴日夜晚我个仔困在电梯里面，困咗四十几分钟，而家冇事啦",
        # A kettle plugged into a socket, not a socket burning.
        "我那个插座没电了，就是床头那个，我烧热水的壶插那儿的，插了不亮",
        # 太空漫步机 is fitness equipment; 差点崴了脚 is nearly hurt, not hurt.
        "草坪那边的健身器材那个太空漫步机咯吱咯吱响得厉害",
        "路灯不亮，黑灯瞎火的，前儿个差点崴了脚",
        # Not seen for days, but nothing says anything is wrong, or where she is is known.
        "隔壁王阿姨这几天没见着，楼道灯坏了好几天了，你们来换一下",
        "楼下那家好几天没人出来，敲门也没人应，后来问了保安，说是全家旅游去了",
        # A water pipe whose valve the caller shut: the home is without water (P2).
        "厨房水管崩了，我赶紧把总阀关了，这下一滴水都没有",
        # Plaster skin that flakes and floor tiles that sink: a repair, no structure giving way.
        "次卧那面墙返潮，墙皮一片一片往下掉，掉得柜子上都是白渣",
        "单元门口那几块地砖塌下去了，一下雨就积水",
        # A word taken back (不对不对，也不算关); 到现在没人 is "so far nobody", not "still".
        "刚才电梯把我爸关在里面了，不对不对，也不算关，就是门开得慢",
        "我老公上个月在楼道里摔伤了，到现在没人给个说法",
    ],
)
def test_regional_words_near_misses_and_damage_done_by_people_are_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1


@pytest.mark.parametrize(
    "text",
    [
        "电梯卡在十二楼了，我妈在里面出不来",
        "楼上扔下来个酒瓶子，把我车玻璃砸了，差点砸到我",
        # Still falling today.
        "昨天下午楼上掉下来一个花盆砸在我脚边上，今天还在往下掉东西",
        "我个仔而家困在电梯里面，出唔嚟",
        "床头那个插座烧黑了，一股焦味",
        "路灯不亮，我妈刚才在楼门口崴了脚，站不起来了",
        # Not seen for days, and nobody answers: a welfare check.
        "我对门那个老太太一个人住，三天没见她出门了，敲门没反应，电话也不接",
        "楼上大爷好几天没下楼了，门口报纸堆了一摞，我怕他出什么事",
        # The valve shut, but the pipe still pours.
        "水管爆了，我把总阀关了，还在往外喷",
        # Plaster that comes away as a heavy piece, or where children are.
        "厨房顶上的墙皮鼓起来一个大包，刚掉下来一大块砸在灶台上",
        "楼道墙砖松了往外翘，好多小孩天天从这儿跑过去",
        # 不对劲 says something is wrong; 到现在还在 says it goes on.
        "电梯把我妈关在里面了，不对劲，怎么按都不开门",
        "昨天晚上水管爆了，到现在还在往外冒水",
    ],
)
def test_their_real_neighbours_stay_p1(text: str) -> None:
    assert read_safety(text).is_p1


def test_what_the_caller_wrongly_believed_is_no_danger() -> None:
    reading = read_safety("我刚才还以为是楼道里哪家电瓶车电池烧了，吓我一跳")
    assert [h.cancelled_by for h in reading.hits if h.hazard == "electrical_fire"] == [
        "hypothetical"]
    # What it really was, told after 结果, is.
    assert read_safety("我还以为是谁家炒菜，结果是楼道电箱里电线烧着了，冒黑烟").is_p1


def test_also_is_not_still() -> None:
    # 还有个 is "there is also a", not the danger still there.
    assert not read_safety("上个礼拜六晚上车停在楼下，第二天早上一看，前挡风玻璃被砸了个坑，"
                           "旁边还有个碎花盆").is_p1
    assert read_safety("上个礼拜六楼上往下扔花盆，今天还有人往下扔").is_p1


def test_a_bulb_and_firework_litter_are_no_danger() -> None:
    assert not read_safety("卫生间的灯，开关按了没反应，换了个灯泡也不亮").is_p1
    assert not read_safety("过完年楼道里全是烟花纸屑，没人扫").is_p1
    assert read_safety("楼道里全是烟，看不清").is_p1


def test_small_leak_is_not_p1_but_flooding_is() -> None:
    assert not read_safety("卫生间地上有点积水，擦了又有").is_p1
    assert read_safety("卫生间积水都漫到客厅了").is_p1


def test_evidence_names_the_words() -> None:
    evidence = read_safety("厨房煤气味特别重").evidence()
    assert evidence and evidence[0].startswith("gas: ")


@pytest.mark.parametrize(
    "text",
    [
        "我上午报的修，你们说回电到现在也没人打过来",  # 回电, not an electric shock
        "停电到晚上八点还没来，冰箱里的东西要坏了",  # a power cut, not a shock
        "你们这个电到底什么时候能恢复",  # 到底: "after all"
        "楼下那堆废纸板放了好久了，怕哪天有人扔个烟头着起来",  # feared
        "我刚才还以为是煤气漏了，原来是垃圾桶里的臭鸡蛋",  # mistaken, then explained
        "三个月前楼上水管爆了淹了我家，赔偿找谁谈",  # past, N months ago
        "厨房我仔细闻了，一点煤气味都没有，就是打不着火",  # denied right after
        "糊味？没有，没闻到，就是插座不通电",  # the agent's question said back, denied
        "两个人在楼下吵，没动手，我就怕等会儿真打起来",  # a fight feared for later
    ],
)
def test_look_alikes_fears_and_denials_are_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_a_denial_does_not_cancel_a_finished_event_or_nobody_coming() -> None:
    # 也没有人 is about help not coming; 了也没有 starts a new clause.
    assert read_safety("电梯困人了也没有人来管，我们在里面半小时了").is_p1
    assert read_safety("插座被电了一下手都麻了，也没有人来看").is_p1


@pytest.mark.parametrize(
    "text",
    [
        "厨房热水器旁边的电表箱门合不上了",  # 水 of 热水器, not water on the meter
        "想请师傅来看看燃气管、电线、水管是不是老化了",  # a list of fixtures
        "电梯到我们十五楼不停了，门不开直接过去了",  # 不停了: skips the floor
        "我妈在楼梯摔骨折了，现在打着石膏，楼梯那个坑你们补一下",  # in care now
        "卫生间下水往上返，返上来全是屎尿，都漫到门口了",  # sewage: a P2, not a flood
        "楼上老往下扔烟头，我阳台的垫子烫了好几个洞",  # a nuisance, nothing heavy
        "停电一上午了，电闸推不上去，饭也做不了水也烧不了",  # 烧不了: cannot boil
        "楼道那个防火门是不是着火的时候才会自动关上",  # how a door works
        "空开一推上去就掉下来，我一个人住弄不明白",  # living alone, nobody hit
        "电梯里空调坏了，闷得人喘不过气",  # stuffy, not a person short of breath
    ],
)
def test_words_that_only_look_like_a_danger_are_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_crackling_sockets_and_people_under_a_falling_branch_stay_p1() -> None:
    assert "electrical_fire" in read_safety("卧室插座一开灯就噼里啪啦地响，还闪火花").hazards
    assert "tree_down" in read_safety("大树枝子断了挂在上面，下面都是人在走").hazards


@pytest.mark.parametrize(
    "text",
    [
        "瓷砖还没掉，我就是担心万一哪天刮大风掉下来砸着人",  # a future that may never come
        "楼前那根大枝子现在整根横在路上，人得绕着走",  # lying on the road: it blocks the way
        "楼上装修把防水层砸坏了，水渗下来，我家吊顶泡塌了一块",  # 砸坏: damage, not a blow
        "我家是六栋一单元1101，阳台栏杆松了",  # 110 inside a room number is no emergency call
    ],
)
def test_a_feared_future_a_blocked_path_or_past_damage_is_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_a_branch_falling_on_the_road_and_a_loose_railing_over_people_stay_p1() -> None:
    assert "tree_down" in read_safety("大风把树刮倒了，横在路上，车都过不去").hazards
    assert "structure" in read_safety("阳台栏杆松了，晃得厉害，底下就是人行道").hazards
    assert "falling_object" in read_safety("上面的瓷砖一直往下掉，下面人来人往的").hazards


@pytest.mark.parametrize(
    "text",
    [
        "草坪里的水管爆了，水一直往上冒，冲了个坑",  # a lawn's pipe wets no one's home
        "阳台外面那根下水管裂开了，水一直往下滴",  # a drain pipe cracked: a leak
        "灶台右边那个一打就着火，挺旺的，左边那个不行",  # a stove that lights
        "井盖一直往外冒白气，远看跟冒烟似的，走近是水蒸气",  # steam, not smoke
        "喷灭蚊的烟雾每回都顺着院子走一圈",  # fogging against mosquitoes
        "出东门的时候道闸杆落下来砸到我车顶了",  # a barrier arm on a car
        "上午电箱烧了，你们电工来过，现在就是没电",  # the electrician came: power out is P2
    ],
)
def test_fixtures_tools_and_handled_faults_are_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_a_pipe_bursting_at_home_and_things_banging_down_from_a_roof_stay_p1() -> None:
    assert read_safety("卫生间墙里的水管爆了，水哗哗往外喷，都流到客厅了").is_p1
    assert "falling_object" in read_safety("楼顶上那个砖头一直往下掉，叮叮咣咣的").hazards
    # Welding sets fires and a fall is heard: neither word cancels a danger.
    assert read_safety("电焊的火星掉到楼下杂物堆上，着火了").is_p1
    assert read_safety("砰的一声好大的声音，楼上的花盆掉下来了，差点砸到人").is_p1


@pytest.mark.parametrize(
    ("text", "hazard"),
    [
        ("电梯门就拿胶带一拦人就走了，门缝能钻进去个孩子，里面就是井道", "lift_fault"),
        ("树枝砍到一半断了，那截卡在树杈上撂那儿了，下面就是滑梯", "tree_down"),
        ("楼下窨井盖碎脱了，一只洞敞开，小囡放学侪从这走", "structure"),
    ],
)
def test_an_open_shaft_a_hung_branch_and_an_open_manhole_are_p1(text: str, hazard: str) -> None:
    assert hazard in read_safety(text).hazards, read_safety(text).hits


@pytest.mark.parametrize(
    "text",
    [
        # A story begun in the past stays past while the caller tells it.
        "前年冬天隔壁单元有户人家没人住，结果水管冻裂了，把楼下整个都淹了，我想问问今年要不要放水",
        "上个月初那场暴风雨，我们小区门口那排广告牌被风吹翻了好几块，我就想问那个保险怎么报",
        # A car's damage is not a person's danger.
        "我停在负二层的车全泡了，水都淹到座椅了，发动机也进水了，4S店说要大修",
        # Praise for staff who already saw to a danger.
        "我想表扬一下你们值班的保安，那天半夜我爸在楼道里摔了，他帮忙叫了救护车",
        # Back to now only to say it is over.
        "上个月十号，楼上那家热水器管子爆了，水漏到我家，地板全泡了，现在是不漏了，可赔偿没人管",
        # A topic named, not a danger told.
        "我想提个建议，关于高空抛物的，能不能在楼下多贴点告示",
    ],
)
def test_a_past_story_a_car_under_water_or_praise_is_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_a_past_storm_whose_damage_is_still_there_stays_p1() -> None:
    # The past made the danger; the caller says it is there now.
    assert read_safety("昨晚大风把那棵大树刮断了，整根斜着搭在路边电线上，现在还有人从下面走").is_p1
    wall = "前天下了一整天的大雨以后，小区那面围墙裂开一条大缝，往路上歪，这会儿学生都从底下过"
    assert read_safety(wall).is_p1
    # Back to now on the way to the danger: not a past story.
    assert read_safety("上礼拜修过的水管今天又爆了，水哗哗往外喷").is_p1


@pytest.mark.parametrize(
    "text",
    [
        # A toilet that will not flush fills up: a blockage (P2), not a flood.
        "我家马桶间那个坑冲不下去，水眼看要漫到地上了",
        "厕所堵了，拿搋子捅了半天，水都快溢出来了",
        # Animals fighting is noise, not violence.
        "小区的流浪猫太多了，半夜在花园里打架，叫得人睡不着",
        # A past storm's branch on a car; 一直没人来 is the service, not the danger.
        "上个礼拜五夜里，停车场那棵大树断了一根枝子砸在我车上，我报了两次一直没人来",
        # A lift stopped with nobody in it; an air conditioner's water dripping on a sill.
        "电梯停在八楼九楼之间不动了，我扒着缝看了，里面是空的",
        "楼上空调的水老往下滴，打在我家雨棚上啪啪响",
    ],
)
def test_a_blocked_toilet_fighting_cats_and_a_past_branch_are_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_people_fighting_and_a_branch_still_hanging_stay_p1() -> None:
    assert "violence" in read_safety("楼下有两个人打起来了，还拿着棍子").hazards
    branch = "前天大风刮断的树枝，现在还挂在人行道上面晃，一直有人从底下走"
    assert read_safety(branch).is_p1


@pytest.mark.parametrize(
    "text",
    [
        # A danger named as the topic of a complaint, not an event.
        "我想投诉，楼上往下扔东西这种事你们物业得管管",
        # Cordoned off since: kept from people.
        "单元门口那块雨棚塌了一半，昨天你们已经拉了警戒线",
        # An injury the caller says left the person all right.
        "孩子在滑梯上刮破了，流了点血，人没事，贴了创可贴",
        # 又闷又热 is "both stuffy and hot", not "again".
        "前天晚上电梯停在半道，我在里面困了半小时，又闷又热",
        # A car alarm; bleeding air from a radiator.
        "楼下有辆车一直在报警，响了半个钟头了，吵得睡不着",
        "暖气片上头不热，我拧了放气的阀门，呲了点气出来",
    ],
)
def test_a_topic_a_cordon_a_car_alarm_and_a_radiator_valve_are_not_p1(text: str) -> None:
    assert not read_safety(text).is_p1, read_safety(text).hits


def test_again_and_a_gas_alarm_stay_p1() -> None:
    assert read_safety("前天修好的电梯又停在半道了，我闺女在里面困着").is_p1
    assert "gas" in read_safety("厨房的燃气报警器一直在响，我闻着也有股味").hazards


def test_also_before_a_past_time_and_a_sealant_are_not_p1() -> None:
    # 还有 before a past time is "and also, back then", not "still".
    gas = "门禁卡坏了。还有前天晚上厨房闻到一股煤气味，师傅来换了管子，现在没事了"
    assert not read_safety(gas).is_p1, read_safety(gas).hits
    assert not read_safety("下雨前窗户外面打的胶掉了一截，怕漏水").is_p1
    # ... but 还有 as "still" keeps a smell current.
    assert read_safety("昨天报过煤气味，到现在还有味，越来越冲").is_p1


def test_wet_wiring_with_its_circuit_cut_and_a_fallen_hinge_are_not_p1() -> None:
    assert not read_safety("洗衣机旁边的插座那块全湿了，我已经把电闸关了").is_p1
    assert not read_safety("柜门的合页掉下来了，砸在地上，门歪着关不上").is_p1
    # The circuit still live: a danger.
    assert read_safety("洗衣机旁边的插座那块全湿了，还在往外冒水").is_p1


def test_a_story_years_ago_stays_past_unless_the_caller_comes_back_to_now() -> None:
    # 还记得 is a memory, and 一直往下流 how the water ran back then.
    assert not read_safety("大前年冬天那回你们还记得吗？楼上暖气管子爆开了，水顺着墙一直往下流，"
                           "今天就是想问下物业费的发票").is_p1
    # A sense at work now (闻着) brings the caller back: a smell now.
    assert read_safety("我家老头前年走了，现在一个人住，我闻着门口好像有点煤气味").is_p1
    # 闻到 is told of last night as well as of now.
    assert not read_safety("昨天半夜我在走廊闻到一股烧焦的味道，后来找着了，是谁家锅烧干了，"
                           "我就是问问这种事找谁").is_p1


def test_cooking_smoke_a_button_name_and_no_gas_after_all_are_not_p1() -> None:
    assert not read_safety("我家油烟机坏了，不转，一做饭屋里全是烟，师傅啥时候能来").is_p1
    assert not read_safety("上周三电梯停在半路，按了紧急呼叫按钮，出来以后想问问"
                           "那天为什么对讲一直没人接").is_p1
    assert not read_safety("厨房好像有股煤气味……哦，是垃圾桶里的菜坏了，"
                           "原来不是煤气，吓我一跳").is_p1
    # Their real neighbours stay P1.
    assert read_safety("做饭的时候插座那儿突然冒烟了，一股焦味").is_p1
    assert read_safety("紧急！三号楼电梯卡住了，我被困在里面，快来").is_p1


def test_a_loose_handrail_a_smell_taken_for_a_fire_and_a_smell_gone_by_morning_are_not_p1() -> None:
    # A handrail that wobbles or has lost a piece is a repair, even up the stairs.
    assert not read_safety("二号楼六楼到七楼那段楼梯扶手松了，一扶就晃，麻烦派人来紧一下").is_p1
    assert not read_safety("楼道扶手断了一截，木头掉在台阶上了，小孩上下楼得注意点").is_p1
    # What was sensed, first taken for a danger that it was not.
    assert not read_safety("下午我闻着一股焦糊味，还以为是配电箱烧了，下去一看是隔壁在熏腊肉，"
                           "就想问问阳台上能不能熏").is_p1
    # A smell last night, gone by this morning: 今天 brings back its absence.
    assert not read_safety("昨晚十点多走廊里有股烧焦的味道，等了一会儿就散了，今天早上起来"
                           "一点味儿都没有了，问问是怎么回事").is_p1
    # Their real neighbours stay P1.
    assert read_safety("楼梯扶手拆走好些天了，边上就是个空档，底下直通楼梯井，"
                       "孩子天天跑上跑下").is_p1
    assert read_safety("闻着一股焦糊味，越来越冲，配电箱那儿在冒烟").is_p1
    assert read_safety("昨晚就闻到煤气味了，今天早上起来味道更大了").is_p1


def test_a_rule_file_that_gives_a_key_twice_is_refused(tmp_path: Path) -> None:
    # PyYAML would keep the second list silently and drop the first one's words.
    rules = tmp_path / "rules.yaml"
    rules.write_text("concepts: {}\nhazards: {}\nunless_anywhere:\n  gas: [a]\n  gas: [b]\n",
                     encoding="utf-8")
    with pytest.raises(ValueError, match="'gas' is given twice"):
        load_rules(rules)
