//! Drawing the parts of a page: title, alert banner and each kind of row.

use embedded_graphics::draw_target::DrawTarget;
use embedded_graphics::geometry::{Dimensions, Point, Size};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::primitives::{Line, Primitive, PrimitiveStyle, Rectangle, Triangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use embedded_graphics::Drawable;

use super::{Row, Scale, Title};
use crate::format::{cut, fits, rate, text_width, FULL};
use crate::history::{History, HISTORY_LEN};
use crate::layout::Layout;
use crate::settings::Level;
use crate::theme::PanelColor;

fn i(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Draws `s` with its top at `at.y`, starting at `at.x` or (`right`) ending at `at.x`.
/// Returns the area it covers.
fn text<C, D>(
    d: &mut D,
    s: &str,
    at: Point,
    font: &MonoFont<'_>,
    color: C,
    right: bool,
) -> Result<Rectangle, D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let style = TextStyleBuilder::new()
        .baseline(Baseline::Top)
        .alignment(if right {
            Alignment::Right
        } else {
            Alignment::Left
        })
        .build();
    let t = Text::with_text_style(s, at, MonoTextStyle::new(font, color), style);
    t.draw(d)?;
    Ok(t.bounding_box())
}

/// Text at a level: coloured, or inverse on a filled box one bar high.
fn level_text<C, D>(
    d: &mut D,
    layout: &Layout,
    s: &str,
    at: Point,
    level: Level,
    right: bool,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let (fg, bg) = C::level(level);
    if let Some(bg) = bg {
        let width = text_width(s.chars().count(), layout.font);
        let x = if right { at.x - i(width) } else { at.x - 1 };
        Rectangle::new(
            Point::new(x, at.y - 1),
            Size::new(width + 2, layout.bar_height),
        )
        .into_styled(PrimitiveStyle::with_fill(bg))
        .draw(d)?;
    }
    text(d, s, at, layout.font, fg, right)?;
    Ok(())
}

/// The title bar.
pub(super) fn title<C, D>(d: &mut D, layout: &Layout, title: &Title) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let w = layout.size.width;
    Rectangle::new(Point::zero(), Size::new(w, layout.title_height))
        .into_styled(PrimitiveStyle::with_fill(C::TITLE_BG))
        .draw(d)?;
    let room = w.saturating_sub(4);
    let short = title.short.unwrap_or(title.left.as_str());
    for (font, y) in layout.title_fonts {
        let space = text_width(1, font);
        let both = |l: &str| {
            !title.right.is_empty()
                && text_width(l.chars().count() + title.right.chars().count(), font) + space <= room
        };
        let choice = if both(&title.left) {
            Some((title.left.as_str(), true))
        } else if fits(&title.left, font, room) {
            Some((title.left.as_str(), false))
        } else if both(short) {
            Some((short, true))
        } else if fits(short, font, room) {
            Some((short, false))
        } else {
            None
        };
        if let Some((left, with_right)) = choice {
            text(d, left, Point::new(2, y), font, C::TITLE_TEXT, false)?;
            if with_right {
                let at = Point::new(i(w) - 3, y);
                text(d, &title.right, at, font, C::TITLE_TEXT, true)?;
            }
            return Ok(());
        }
    }
    let (font, y) = layout.title_fonts[1];
    let left: super::Str = cut(&title.left, font, room);
    text(d, &left, Point::new(2, y), font, C::TITLE_TEXT, false)?;
    Ok(())
}

/// The alert banner, over the title bar: a warning sign and the message.
pub(super) fn banner<C, D>(d: &mut D, layout: &Layout, message: &str) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let w = layout.size.width;
    let h = layout.title_height;
    Rectangle::new(Point::zero(), Size::new(w, h))
        .into_styled(PrimitiveStyle::with_fill(C::ALERT_BG))
        .draw(d)?;
    if C::MONOCHROME {
        // Light title bars are ordinary; the banner is dark with a rule under it.
        Line::new(Point::new(0, i(h) - 1), Point::new(i(w) - 1, i(h) - 1))
            .into_styled(PrimitiveStyle::with_stroke(C::TEXT, 1))
            .draw(d)?;
    }
    let (font, y) = layout
        .title_fonts
        .into_iter()
        .find(|(f, _)| fits(message, f, w.saturating_sub(6 + h)))
        .unwrap_or(layout.title_fonts[1]);
    // The sign: a triangle as high as the capitals, with an exclamation mark cut out.
    let cap = i(font.baseline);
    let top = y + i(font.baseline) - cap;
    let half = cap / 2 + 1;
    Triangle::new(
        Point::new(2 + half, top),
        Point::new(2, top + cap),
        Point::new(2 + 2 * half, top + cap),
    )
    .into_styled(PrimitiveStyle::with_fill(C::ALERT_TEXT))
    .draw(d)?;
    let mark = PrimitiveStyle::with_stroke(C::ALERT_BG, 1);
    Line::new(
        Point::new(2 + half, top + 3),
        Point::new(2 + half, top + cap - 3),
    )
    .into_styled(mark)
    .draw(d)?;
    Line::new(
        Point::new(2 + half, top + cap - 1),
        Point::new(2 + half, top + cap - 1),
    )
    .into_styled(mark)
    .draw(d)?;
    let x = 2 + 2 * half + 4;
    let room = w.saturating_sub(u32::try_from(x).unwrap_or(0) + 2);
    let message: super::Str = cut(message, font, room);
    text(d, &message, Point::new(x, y), font, C::ALERT_TEXT, false)?;
    Ok(())
}

/// One row (or several slots of one row) of content.
pub(super) fn row<C, D>(
    d: &mut D,
    layout: &Layout,
    row: &Row<'_>,
    first: usize,
    span: usize,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let y = layout.row_y(first);
    let w = i(layout.size.width);
    let right = w - 1;
    let cw = layout.char_width();
    // The area of a multi-slot row: from the top of its first bar to the bottom of its last.
    let area = || {
        let bottom = layout.row_y(first + span - 1) - 1 + i(layout.bar_height);
        Rectangle::with_corners(Point::new(0, y - 1), Point::new(right, bottom - 1))
    };
    match row {
        Row::Text {
            left,
            left_level,
            right: r,
            right_level,
        } => {
            let columns = layout.columns();
            let r_len = r.chars().count();
            let room = if r_len == 0 {
                columns
            } else {
                columns.saturating_sub(r_len + 1)
            };
            let l: super::Str = crate::format::cut_chars(left, room);
            level_text(d, layout, &l, Point::new(0, y), *left_level, false)?;
            if !r.is_empty() {
                level_text(d, layout, r, Point::new(right, y), *right_level, true)?;
            }
        }
        Row::Bar {
            label,
            value,
            text: t,
            level,
        } => {
            let label_w = if label.is_empty() {
                0
            } else {
                let l: super::Str = crate::format::cut_chars(label, layout.label_chars);
                text(d, &l, Point::new(0, y), layout.font, C::TEXT, false)?;
                i(cw * u32::try_from(layout.label_chars).unwrap_or(0)) + 2
            };
            let value_w = i(cw * u32::try_from(layout.value_chars).unwrap_or(0));
            let bar_w = (w - label_w - value_w - 4).max(4);
            bar(
                d,
                Point::new(label_w, y - 1),
                Size::new(bar_w as u32, layout.bar_height),
                *value,
                *level,
            )?;
            level_text(d, layout, t, Point::new(right, y), *level, true)?;
        }
        Row::Net {
            label,
            rx,
            tx,
            unit,
        } => {
            let mut x = 0;
            if !label.is_empty() {
                let l: super::Str = crate::format::cut_chars(label, 7);
                text(d, &l, Point::new(0, y), layout.font, C::TEXT, false)?;
                x = i(cw * u32::try_from(l.chars().count() + 1).unwrap_or(0));
            }
            let cap = i(layout.cap_height());
            let arrow_w = cap / 2 * 2 + 1;
            let half = (w - x) / 2;
            for (at, up, value) in [(x, false, *rx), (x + half, true, *tx)] {
                arrow(d, Point::new(at, y), arrow_w, cap, up)?;
                let s = rate(value, *unit);
                text(
                    d,
                    &s,
                    Point::new(at + arrow_w + 2, y),
                    layout.font,
                    C::TEXT,
                    false,
                )?;
            }
        }
        Row::Spark { history, scale } => {
            sparkline(d, area(), history, *scale)?;
        }
        Row::Mirror { rx, tx } => {
            mirror(d, area(), rx, tx)?;
        }
        Row::Columns { values } => {
            columns(d, area(), values)?;
        }
    }
    Ok(())
}

/// A bar: an outline, filled in proportion to `value` (capped at 100 %); `None` leaves it
/// empty.
fn bar<C, D>(
    d: &mut D,
    at: Point,
    size: Size,
    value: Option<u16>,
    level: Level,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    Rectangle::new(at, size)
        .into_styled(PrimitiveStyle::with_stroke(C::DIM, 1))
        .draw(d)?;
    let inner = size.width.saturating_sub(4);
    let filled = u32::from(value.unwrap_or(0).min(FULL)) * inner / u32::from(FULL);
    if filled > 0 {
        Rectangle::new(
            at + Point::new(2, 2),
            Size::new(filled, size.height.saturating_sub(4)),
        )
        .into_styled(PrimitiveStyle::with_fill(C::bar(level)))
        .draw(d)?;
    }
    Ok(())
}

/// An arrow `width` wide and `height` high with its top-left corner at `at`: pointing up for
/// sent, down for received.
fn arrow<C, D>(d: &mut D, at: Point, width: i32, height: i32, up: bool) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let (tip, base) = if up { (0, height - 1) } else { (height - 1, 0) };
    Triangle::new(
        at + Point::new(width / 2, tip),
        at + Point::new(0, base),
        at + Point::new(width - 1, base),
    )
    .into_styled(PrimitiveStyle::with_fill(if up { C::TX } else { C::RX }))
    .draw(d)
}

/// Pixels per sample and how many samples fit in `width`: the whole number of pixels that
/// comes closest to showing the whole history (at least one).
fn steps(width: u32) -> (u32, usize) {
    let len = u32::try_from(HISTORY_LEN).unwrap_or(u32::MAX);
    let step = ((width + len / 2) / len).max(1);
    (step, usize::try_from(width / step).unwrap_or(0))
}

/// `v` scaled from `lo..=hi` to `0..=height`.
fn scaled(v: u32, lo: u32, hi: u32, height: u32) -> u32 {
    if hi <= lo {
        return 0;
    }
    let v = v.clamp(lo, hi) - lo;
    let h = u64::from(v) * u64::from(height) / u64::from(hi - lo);
    u32::try_from(h).unwrap_or(height)
}

/// A history as filled columns standing on an axis, the newest at the right.
fn sparkline<C, D>(
    d: &mut D,
    area: Rectangle,
    history: &History<HISTORY_LEN>,
    scale: Scale,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let Some(bottom_right) = area.bottom_right() else {
        return Ok(());
    };
    let bottom = bottom_right.y;
    Line::new(Point::new(area.top_left.x, bottom), bottom_right)
        .into_styled(PrimitiveStyle::with_stroke(C::DIM, 1))
        .draw(d)?;
    let height = area.size.height.saturating_sub(1);
    let (step, count) = steps(area.size.width);
    let shown = || history.newest(count);
    let (lo, hi) = match scale {
        Scale::Fixed(max) => (0, max),
        Scale::Range(span) => {
            let lo = shown().min().unwrap_or(0);
            let hi = shown().max().unwrap_or(0).max(lo.saturating_add(span));
            (lo, hi)
        }
    };
    let floor = u32::from(matches!(scale, Scale::Range(_)));
    for (slot, v) in sweep(history, count) {
        let x = area.top_left.x + i(step) * i(slot);
        let h = scaled(v, lo, hi, height).max(floor);
        if h > 0 {
            Rectangle::new(Point::new(x, bottom - i(h)), Size::new(step, h))
                .into_styled(PrimitiveStyle::with_fill(C::BAR))
                .draw(d)?;
        }
    }
    Ok(())
}

/// The columns of a sweeping graph of `count` columns: each value with the column it keeps, the
/// newest one column behind an empty one, as on an oscilloscope. A refresh changes two columns
/// instead of every one, as a scrolling graph does, which matters for dirty-area updates.
fn sweep<const N: usize>(
    history: &History<N>,
    count: usize,
) -> impl Iterator<Item = (u32, u32)> + '_ {
    let count = count.max(1);
    let newest = history.pushed();
    history
        .newest(count.saturating_sub(1))
        .rev()
        .enumerate()
        .map(move |(age, v)| {
            let slot = newest.wrapping_sub(1).wrapping_sub(age) % count;
            (u32::try_from(slot).unwrap_or(0), v)
        })
}

/// Received rising from a middle line and sent hanging from it, on one scale.
fn mirror<C, D>(
    d: &mut D,
    area: Rectangle,
    rx: &History<HISTORY_LEN>,
    tx: &History<HISTORY_LEN>,
) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let Some(bottom_right) = area.bottom_right() else {
        return Ok(());
    };
    let (step, count) = steps(area.size.width);
    let half = area.size.height.saturating_sub(1) / 2;
    let mid = area.top_left.y + i(half);
    Line::new(
        Point::new(area.top_left.x, mid),
        Point::new(bottom_right.x, mid),
    )
    .into_styled(PrimitiveStyle::with_stroke(C::DIM, 1))
    .draw(d)?;
    let hi = rx.newest(count).chain(tx.newest(count)).max().unwrap_or(0);
    for (history, up, color) in [(rx, true, C::RX), (tx, false, C::TX)] {
        for (slot, v) in sweep(history, count) {
            let x = area.top_left.x + i(step) * i(slot);
            let h = scaled(v, 0, hi, half);
            if h > 0 {
                let top = if up { mid - i(h) } else { mid + 1 };
                Rectangle::new(Point::new(x, top), Size::new(step, h))
                    .into_styled(PrimitiveStyle::with_fill(color))
                    .draw(d)?;
            }
        }
    }
    Ok(())
}

/// One vertical bar per value across the area.
fn columns<C, D>(d: &mut D, area: Rectangle, values: &[(u16, Level)]) -> Result<(), D::Error>
where
    C: PanelColor,
    D: DrawTarget<Color = C>,
{
    let n = u32::try_from(values.len()).unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    let gap = if area.size.width / n >= 12 { 3 } else { 1 };
    let width = (area.size.width + gap) / n;
    if width <= gap {
        return Ok(());
    }
    let col = width - gap;
    let height = area.size.height;
    for (k, (value, level)) in (0..).zip(values) {
        let x = area.top_left.x + i(k * width);
        let at = Point::new(x, area.top_left.y);
        if col >= 5 {
            Rectangle::new(at, Size::new(col, height))
                .into_styled(PrimitiveStyle::with_stroke(C::DIM, 1))
                .draw(d)?;
            let h = scaled(
                u32::from(*value),
                0,
                u32::from(FULL),
                height.saturating_sub(4),
            );
            if h > 0 {
                let top = area.top_left.y + i(height) - 2 - i(h);
                Rectangle::new(Point::new(x + 2, top), Size::new(col - 4, h))
                    .into_styled(PrimitiveStyle::with_fill(C::bar(*level)))
                    .draw(d)?;
            }
        } else {
            let h = scaled(u32::from(*value), 0, u32::from(FULL), height).max(1);
            let top = area.top_left.y + i(height) - i(h);
            Rectangle::new(Point::new(x, top), Size::new(col, h))
                .into_styled(PrimitiveStyle::with_fill(C::bar(*level)))
                .draw(d)?;
        }
    }
    Ok(())
}
