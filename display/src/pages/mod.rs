//! Every page, on every panel size, monochrome or colour.
//!
//! A page is a title bar and rows. Each page builds its rows ([`Item`]s) from the [`Model`],
//! each with a priority; [`draw_items`] keeps the most important ones that fit the panel's
//! [`Layout`], shows them in their own order, and gives the space left to rows that can grow
//! (sparklines, the per-core chart). So a 128x32 panel shows the three rows that matter most and
//! a 240x320 panel shows everything, from one description of the page.
//!
//! Drawing is generic over [`DrawTarget`] and over the colour ([`PanelColor`]): the same code
//! draws a 1-bit [`crate::Framebuffer`] and an RGB565 TFT. Nothing allocates.

mod content;
mod draw;

use embedded_graphics::draw_target::{DrawTarget, DrawTargetExt};
use embedded_graphics::geometry::Point;
use embedded_graphics::primitives::Rectangle;
use ember_wire::sample::MAX_CORES;
use heapless::{String, Vec};

use crate::history::History;
use crate::history::HISTORY_LEN;
use crate::layout::Layout;
use crate::model::{alert, Alert, Model};
use crate::overview::Overview;
use crate::settings::{Level, RateUnit, Settings};
use crate::theme::PanelColor;

pub use content::MAX_ITEMS;

/// The pages, in their default rotation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Page {
    /// Hostname, IP, CPU, memory, disk, temperature, uptime and network at a glance.
    Overview,
    /// Load, CPU time split and each core.
    Cpu,
    /// Each interface's rates with a sparkline.
    Network,
    /// Filesystems' use and block devices' I/O.
    Disks,
    /// Each sensor and the hottest one's history; the Pi's throttling.
    Temperatures,
    /// The busiest and the largest processes.
    Processes,
    /// Hosts of the fleet, up or down.
    Fleet,
}

impl Page {
    /// Every page, in the default order.
    pub const ALL: [Page; 7] = [
        Page::Overview,
        Page::Cpu,
        Page::Network,
        Page::Disks,
        Page::Temperatures,
        Page::Processes,
        Page::Fleet,
    ];

    /// The page's name in configuration files and file names.
    pub const fn name(self) -> &'static str {
        match self {
            Page::Overview => "overview",
            Page::Cpu => "cpu",
            Page::Network => "network",
            Page::Disks => "disks",
            Page::Temperatures => "temperatures",
            Page::Processes => "processes",
            Page::Fleet => "fleet",
        }
    }

    /// The page called `name` (as [`Page::name`] gives it).
    pub fn from_name(name: &str) -> Option<Page> {
        Page::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A short string in a row.
pub(crate) type Str = String<32>;

/// How a sparkline is scaled vertically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    /// From 0 to this value.
    Fixed(u32),
    /// From the smallest to the largest value shown, at least this far apart.
    Range(u32),
}

/// One row's content.
#[derive(Debug, Clone)]
pub(crate) enum Row<'a> {
    /// Text on the left and on the right, each at its level.
    Text {
        left: Str,
        left_level: Level,
        right: Str,
        right_level: Level,
    },
    /// A label, a bar filled to `value` (hundredths of a percent) and `text` on the right. An
    /// empty label gives the bar the label's room too.
    Bar {
        label: Str,
        value: Option<u16>,
        text: Str,
        level: Level,
    },
    /// Received and sent rates behind down and up arrows, after an optional label.
    Net {
        label: Str,
        rx: u64,
        tx: u64,
        unit: RateUnit,
    },
    /// One history as filled columns.
    Spark {
        history: &'a History<HISTORY_LEN>,
        scale: Scale,
    },
    /// Received above and sent below a middle line, on one scale.
    Mirror {
        rx: &'a History<HISTORY_LEN>,
        tx: &'a History<HISTORY_LEN>,
    },
    /// One vertical bar per value (the CPU's cores).
    Columns {
        values: Vec<(u16, Level), MAX_CORES>,
    },
}

/// A row with how much it matters and how many slots it may take.
#[derive(Debug, Clone)]
pub(crate) struct Item<'a> {
    pub row: Row<'a>,
    /// Lower is more important.
    pub priority: u8,
    /// Slots it needs.
    pub min_span: u8,
    /// Slots it can use.
    pub max_span: u8,
}

impl<'a> Item<'a> {
    pub fn new(priority: u8, row: Row<'a>) -> Self {
        Item {
            row,
            priority,
            min_span: 1,
            max_span: 1,
        }
    }

    pub fn spans(mut self, min: u8, max: u8) -> Self {
        self.min_span = min.max(1);
        self.max_span = max.max(self.min_span);
        self
    }
}

/// The title bar: the page's name on the left, optionally something on the right.
#[derive(Debug, Clone, Default)]
pub(crate) struct Title {
    pub left: Str,
    /// A shorter name for narrow panels.
    pub short: Option<&'static str>,
    pub right: Str,
}

/// Draws `page` of `model` on `target`, filling its bounding box (whose size picks the
/// [`Layout`]), with the alert banner over the title when [`alert`] finds one.
pub fn draw<C, D>(
    page: Page,
    model: &Model<'_>,
    settings: &Settings,
    target: &mut D,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let layout = Layout::for_size(target.bounding_box().size);
    let banner = alert(model, settings);
    draw_with(page, model, settings, &layout, banner.as_ref(), target)
}

/// [`draw`] with an explicit layout and banner.
pub fn draw_with<C, D>(
    page: Page,
    model: &Model<'_>,
    settings: &Settings,
    layout: &Layout,
    banner: Option<&Alert>,
    target: &mut D,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let (title, items) = match page {
        Page::Overview => {
            let ov = Overview::from_sample(model.host, model.ipv4, model.sample);
            content::overview(&ov, Some(model), settings, layout)
        }
        Page::Cpu => content::cpu(model, settings, layout),
        Page::Network => content::network(model, settings, layout),
        Page::Disks => content::disks(model, settings, layout),
        Page::Temperatures => content::temperatures(model, settings, layout),
        Page::Processes => content::processes(model, layout),
        Page::Fleet => content::fleet(model, layout),
    };
    draw_items(&title, &items, layout, banner, target)
}

/// The overview of `overview` alone (no sample, histories or fleet): what
/// [`crate::overview::draw`] draws.
pub(crate) fn draw_overview<C, D>(
    overview: &Overview,
    settings: &Settings,
    layout: &Layout,
    target: &mut D,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let (title, items) = content::overview(overview, None, settings, layout);
    draw_items(&title, &items, layout, None, target)
}

/// Lays out and draws a page: clears `layout.size` at the origin, draws the title (or the
/// banner) and the rows that fit. Nothing is drawn outside `layout.size`.
pub(crate) fn draw_items<C, D>(
    title: &Title,
    items: &[Item<'_>],
    layout: &Layout,
    banner: Option<&Alert>,
    target: &mut D,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let mut d = target.clipped(&Rectangle::new(Point::zero(), layout.size));
    d.clear(C::BACKGROUND)?;
    match banner {
        Some(a) => draw::banner(&mut d, layout, &a.text)?,
        None => draw::title(&mut d, layout, title)?,
    }
    let placed = place(items, layout.rows);
    for (item, first, span) in placed.iter() {
        draw::row(&mut d, layout, &items[*item].row, *first, *span)?;
    }
    Ok(())
}

/// Chooses the items that fit in `slots`: by priority, each taking its minimum span; then the
/// slots left go to items that can grow, in display order. Returns (item, first slot, span) in
/// display order.
pub(crate) fn place(items: &[Item<'_>], slots: usize) -> Vec<(usize, usize, usize), MAX_ITEMS> {
    let mut order: Vec<usize, MAX_ITEMS> = (0..items.len().min(MAX_ITEMS)).collect();
    // Equal priorities keep their display order.
    order.sort_unstable_by_key(|&i| (items[i].priority, i));
    let mut chosen = [false; MAX_ITEMS];
    let mut used = 0usize;
    for &i in &order {
        let need = usize::from(items[i].min_span);
        if used + need <= slots {
            chosen[i] = true;
            used += need;
        }
    }
    let mut left = slots - used;
    let mut out = Vec::new();
    let mut slot = 0;
    for (i, item) in items.iter().enumerate().take(MAX_ITEMS) {
        if !chosen[i] {
            continue;
        }
        let grow = usize::from(item.max_span - item.min_span).min(left);
        left -= grow;
        let span = usize::from(item.min_span) + grow;
        let _ = out.push((i, slot, span));
        slot += span;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: u8) -> Item<'static> {
        Item::new(
            p,
            Row::Text {
                left: Str::new(),
                left_level: Level::Normal,
                right: Str::new(),
                right_level: Level::Normal,
            },
        )
    }

    #[test]
    fn placement_keeps_the_most_important_in_display_order() {
        let items = [text(5), text(0), text(1), text(3), text(2), text(4)];
        let got = place(&items, 3);
        assert_eq!(got.as_slice(), &[(1, 0, 1), (2, 1, 1), (4, 2, 1)]);
        let got = place(&items, 10);
        assert_eq!(got.len(), 6);
        assert!(place(&items, 0).is_empty());
    }

    #[test]
    fn growing_rows_take_the_space_left() {
        let items = [text(0), text(1).spans(2, 4), text(2), text(3).spans(2, 100)];
        assert_eq!(
            place(&items, 5).as_slice(),
            &[(0, 0, 1), (1, 1, 3), (2, 4, 1)],
            "the last growing row does not fit its minimum; the first takes the slot left"
        );
        assert_eq!(
            place(&items, 12).as_slice(),
            &[(0, 0, 1), (1, 1, 4), (2, 5, 1), (3, 6, 6)]
        );
    }

    #[test]
    fn page_names_round_trip() {
        for p in Page::ALL {
            assert_eq!(Page::from_name(p.name()), Some(p));
        }
        assert_eq!(Page::from_name("nope"), None);
    }
}
