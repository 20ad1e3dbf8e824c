//! Where things go on a panel of a given size.
//!
//! Every page is a title bar and a column of rows ("slots") of the same pitch; a [`Layout`]
//! says how big those are for a panel size, and the pages decide what fills the slots, most
//! important first (see [`crate::pages`]). Four classes cover the supported panels:
//!
//! | class  | panels                    | title font      | row font | slots            |
//! |--------|---------------------------|-----------------|----------|------------------|
//! | tiny   | 128x32                    | 4x6             | 5x7      | 3                |
//! | small  | 128x64                    | 6x10            | 5x7      | 6                |
//! | medium | 160x128                   | 7x13 bold       | 6x10     | 9                |
//! | large  | 240x240, 240x320, 320x240 | 10x20           | 8x13     | 13, 18, 13       |

use embedded_graphics::geometry::Size;
use embedded_graphics::mono_font::{iso_8859_1, MonoFont};

use crate::format::text_width;

/// Fonts and geometry of one panel size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// The panel's size.
    pub size: Size,
    /// Text in rows.
    pub font: &'static MonoFont<'static>,
    /// Title fonts and the top of their text, largest first: the first one the title fits in
    /// is used, the last one cuts it.
    pub title_fonts: [(&'static MonoFont<'static>, i32); 2],
    /// Height of the title bar.
    pub title_height: u32,
    /// Top of the first row's text.
    pub first_row: i32,
    /// Distance between the tops of two rows.
    pub pitch: i32,
    /// How many rows fit.
    pub rows: usize,
    /// Top of the last row's text when it is pushed against the bottom edge (see
    /// [`Layout::for_size`]).
    pub bottom_row: Option<i32>,
    /// Height of a bar, which starts one pixel above its row's text.
    pub bar_height: u32,
    /// Characters of a bar's label column.
    pub label_chars: usize,
    /// Characters of a bar's value column.
    pub value_chars: usize,
}

impl Layout {
    /// The layout for a panel of `size`.
    ///
    /// Rows are stacked at the class's pitch below the title bar; when the space left under the
    /// last of them still holds a line of text with a pixel to spare, one more row is pushed
    /// against the bottom edge (on a 128x64 panel that is the sixth row, at y = 57).
    pub fn for_size(size: Size) -> Layout {
        let (w, h) = (size.width, size.height);
        let small = &iso_8859_1::FONT_5X7;
        let (font, title_fonts, title_height, first_row, pitch): (_, [_; 2], u32, i32, i32) =
            if h < 48 {
                let tiny = &iso_8859_1::FONT_4X6;
                (small, [(tiny, 1), (tiny, 1)], 7, 9, 8)
            } else if h < 100 || w < 150 {
                let title = &iso_8859_1::FONT_6X10;
                (small, [(title, 1), (small, 2)], 11, 13, 9)
            } else if h < 200 || w < 200 {
                let title = &iso_8859_1::FONT_7X13_BOLD;
                let row = &iso_8859_1::FONT_6X10;
                (row, [(title, 1), (row, 3)], 15, 17, 12)
            } else {
                let title = &iso_8859_1::FONT_10X20;
                let row = &iso_8859_1::FONT_8X13;
                (row, [(title, 1), (row, 5)], 22, 25, 17)
            };
        let line = i32::try_from(font.character_size.height).unwrap_or(i32::MAX);
        let height = i32::try_from(h).unwrap_or(i32::MAX);
        // Rows whose text ends inside the panel.
        let room = height - line - first_row;
        let mut rows = if room < 0 {
            0
        } else {
            usize::try_from(room / pitch + 1).unwrap_or(0)
        };
        let mut bottom_row = None;
        if rows > 0 {
            let last = first_row + pitch * (i32::try_from(rows).unwrap_or(0) - 1);
            let bottom = height - line;
            if bottom > last + line {
                bottom_row = Some(bottom);
                rows += 1;
            }
        }
        Layout {
            size,
            font,
            title_fonts,
            title_height,
            first_row,
            pitch,
            rows,
            bottom_row,
            bar_height: u32::try_from(pitch - 1).unwrap_or(1),
            label_chars: 4,
            value_chars: 4,
        }
    }

    /// Top of row `i`'s text.
    pub fn row_y(&self, i: usize) -> i32 {
        match self.bottom_row {
            Some(y) if i + 1 == self.rows => y,
            _ => self.first_row + self.pitch * i32::try_from(i).unwrap_or(i32::MAX / 2),
        }
    }

    /// Width of one character of the row font, spacing included.
    pub fn char_width(&self) -> u32 {
        text_width(1, self.font)
    }

    /// How many characters of the row font fit across the panel.
    pub fn columns(&self) -> usize {
        usize::try_from(self.size.width / self.char_width().max(1)).unwrap_or(0)
    }

    /// Height of capitals in the row font.
    pub fn cap_height(&self) -> u32 {
        self.font.baseline + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(w: u32, h: u32) -> std::vec::Vec<i32> {
        let l = Layout::for_size(Size::new(w, h));
        (0..l.rows).map(|i| l.row_y(i)).collect()
    }

    #[test]
    fn rows_of_the_supported_panels() {
        assert_eq!(rows(128, 64), [13, 22, 31, 40, 49, 57]);
        assert_eq!(rows(128, 32), [9, 17, 25]);
        assert_eq!(rows(160, 128).len(), 9);
        assert_eq!(rows(240, 240).len(), 13);
        assert_eq!(rows(320, 240).len(), 13);
        assert_eq!(rows(240, 320).len(), 17);
        for (w, h) in [
            (128, 32),
            (128, 64),
            (160, 128),
            (240, 240),
            (240, 320),
            (320, 240),
        ] {
            let l = Layout::for_size(Size::new(w, h));
            let last = l.row_y(l.rows - 1);
            let line = l.font.character_size.height as i32;
            assert!(last + line <= h as i32, "{w}x{h}: last row ends inside");
            assert!(l.first_row > l.title_height as i32, "{w}x{h}");
            for i in 1..l.rows {
                assert!(l.row_y(i) - l.row_y(i - 1) > line, "{w}x{h} row {i}");
            }
        }
        let l = Layout::for_size(Size::new(128, 64));
        assert_eq!((l.columns(), l.cap_height(), l.bar_height), (25, 6, 8));
    }

    #[test]
    fn tiny_and_odd_sizes_do_not_panic() {
        for (w, h) in [(0, 0), (1, 1), (8, 8), (u32::MAX, u32::MAX), (2000, 10)] {
            let l = Layout::for_size(Size::new(w, h));
            for i in 0..l.rows.min(1000) {
                let _ = l.row_y(i);
            }
        }
        assert_eq!(Layout::for_size(Size::new(128, 10)).rows, 0);
    }
}
